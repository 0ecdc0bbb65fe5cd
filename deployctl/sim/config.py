"""The simulator's settings: the engine's own command line (TGI launcher or `vllm serve` flags) and SIM_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from deployctl.sim.latency import LatencyModel


@dataclass
class SimConfig:
    engine: str = "tgi"  # the API it speaks: tgi, or vllm (OpenAI-compatible)
    model_id: str = "deployctl/simulated-model"
    model_path: str | None = None  # vLLM: the positional model argument (`root` in /v1/models)
    hostname: str = "0.0.0.0"
    port: int = 80
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    max_batch_prefill_tokens: int = 4146
    max_concurrent_requests: int = 128
    max_num_seqs: int = 256  # vLLM: the running batch's size; more requests wait in its queue
    max_best_of: int = 2
    max_stop_sequences: int = 4
    max_client_batch_size: int = 4
    validation_workers: int = 2
    api_key: str | None = None
    load_seconds: float = 2.0
    latency: LatencyModel = field(default_factory=LatencyModel)
    # Fault switches, for tests and rehearsals.
    crash_after: int | None = None  # exit the process after N generation requests
    never_healthy: bool = False
    control: bool = False  # the /_sim/* routes (stall): only for stacks rendered with --sim-fault
    # SIM_POWER_MODEL: simulated power limits and energy counters (sim/power.py) for `power tune --simulate`.
    power_model: str | None = None
    # SIM_KV_TOKENS: the KV-cache tokens the simulator reports at start-up as the engine would (the plan's,
    # from engines/simulator.py sim_env; `--sim-fault kv-tokens=N` rehearses an engine that got less). It is
    # also the pool /metrics reports KV usage against (the share the in-flight requests hold).
    kv_tokens_env: int | None = None
    num_shard: int = 1
    version: str = "3.3.4-sim"
    sha: str = "deployctl-simulator"

    @property
    def kv_tokens(self) -> int:
        """Give the KV-cache tokens to report: SIM_KV_TOKENS, else room for every concurrent request at full length."""
        if self.kv_tokens_env is not None:
            return self.kv_tokens_env
        return self.max_total_tokens * min(self.max_concurrent_requests, self.max_num_seqs)

    @property
    def control_routes(self) -> bool:
        """Whether the /_sim/* routes exist: with fault injection, or with the power model (its /_sim/power)."""
        return self.control or self.power_model is not None


_INT_FLAGS = {
    "--max-input-tokens": "max_input_tokens",
    "--max-input-length": "max_input_tokens",
    "--max-total-tokens": "max_total_tokens",
    "--max-batch-prefill-tokens": "max_batch_prefill_tokens",
    "--max-concurrent-requests": "max_concurrent_requests",
    "--port": "port",
    "--max-best-of": "max_best_of",
    "--max-stop-sequences": "max_stop_sequences",
    "--max-client-batch-size": "max_client_batch_size",
    "--validation-workers": "validation_workers",
    "--num-shard": "num_shard",
}
_STR_FLAGS = {"--model-id": "model_id", "--hostname": "hostname", "--api-key": "api_key"}
# Flags TGI has that take no value (the simulator accepts and ignores them).
_BOOL_FLAGS = {
    "--trust-remote-code",
    "--disable-custom-kernels",
    "--json-output",
    "--env",
    "--ngrok",
    "--disable-grammar-support",
    "--enable-prefill-logprobs",
}


def _env_float(env: dict[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]  # checked above
    except ValueError:
        raise SystemExit(f"simulator: {name}={value!r} is not a number") from None
    if not 0 <= number < float("inf"):
        raise SystemExit(f"simulator: {name}={value!r} must be a finite number >= 0")
    return number


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"simulator: {name} {value!r} is not a whole number") from None


# `vllm serve` flags the simulator reads (tests/data/vllm/serve-flags.md); others are accepted and ignored.
_VLLM_INT = {
    "--max-model-len": "max_total_tokens",
    "--max-num-seqs": "max_num_seqs",
    "--max-num-batched-tokens": "max_batch_prefill_tokens",
    "--port": "port",
}
_VLLM_STR = {"--served-model-name": "model_id", "--host": "hostname", "--api-key": "api_key"}
_VLLM_BOOL = {"--disable-custom-all-reduce", "--enforce-eager", "--trust-remote-code", "--disable-log-stats"}
VLLM_PORT = 8000  # `vllm serve --port` default
VLLM_VERSION = "0.32.0"  # the default image's release (engines/vllm.py), whose answers the simulator copies


def _from_vllm_args(argv: list[str], env: dict[str, str]) -> SimConfig:
    """Give the settings from `vllm serve MODEL --flags` and VLLM_API_KEY (the flag wins, as in vLLM)."""
    cfg = SimConfig(engine="vllm", port=VLLM_PORT, version=VLLM_VERSION, api_key=env.get("VLLM_API_KEY") or None)
    cfg.max_concurrent_requests = 1_000_000  # vLLM queues what does not fit its batch; it never answers 429
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, _, inline = arg.partition("=")
        if not flag.startswith("-"):
            if cfg.model_path is not None:
                raise SystemExit(f"simulator: unexpected argument {arg!r}")
            cfg.model_path = arg
            i += 1
            continue
        if flag in _VLLM_BOOL:
            i += 1
            continue
        value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
        i += 1 if inline else 2
        if flag in _VLLM_INT:
            setattr(cfg, _VLLM_INT[flag], int(value))
        elif flag in _VLLM_STR:
            setattr(cfg, _VLLM_STR[flag], value)
    if cfg.model_id == SimConfig.model_id and cfg.model_path:
        cfg.model_id = cfg.model_path  # vLLM serves the model under its path without --served-model-name
    cfg.max_input_tokens = cfg.max_total_tokens - 1
    return cfg


def from_args(argv: list[str], env: dict[str, str] | None = None) -> SimConfig:
    """Give the settings from the engine's arguments and the environment (flags win, as in the engines)."""
    env = dict(os.environ if env is None else env)
    if env.get("SIM_ENGINE", "tgi") == "vllm":
        return _with_sim_env(_from_vllm_args(argv, env), env)
    cfg = SimConfig()
    for flag, attr in {**_INT_FLAGS, **_STR_FLAGS}.items():
        name = flag[2:].upper().replace("-", "_")
        if env.get(name):
            setattr(cfg, attr, _int(name, env[name]) if flag in _INT_FLAGS else env[name])
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, _, inline = arg.partition("=")
        if flag in _BOOL_FLAGS:
            i += 1
            continue
        if not flag.startswith("--"):
            raise SystemExit(f"simulator: unexpected argument {arg!r}")
        value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
        i += 1 if inline else 2
        if flag in _INT_FLAGS:
            setattr(cfg, _INT_FLAGS[flag], _int(flag, value))
        elif flag in _STR_FLAGS:
            setattr(cfg, _STR_FLAGS[flag], value)
    return _with_sim_env(cfg, env)


def _with_sim_env(cfg: SimConfig, env: dict[str, str]) -> SimConfig:
    cfg.load_seconds = _env_float(env, "SIM_LOAD_SECONDS", cfg.load_seconds)
    cfg.latency = LatencyModel(
        ttft_base_ms=_env_float(env, "SIM_TTFT_BASE_MS", cfg.latency.ttft_base_ms),
        prefill_tokens_per_s=_env_float(env, "SIM_PREFILL_TOKENS_PER_S", cfg.latency.prefill_tokens_per_s),
        itl_ms=_env_float(env, "SIM_ITL_MS", cfg.latency.itl_ms),
        itl_per_stream_ms=_env_float(env, "SIM_ITL_PER_STREAM_MS", cfg.latency.itl_per_stream_ms),
    )
    if env.get("SIM_KV_TOKENS"):
        cfg.kv_tokens_env = _int("SIM_KV_TOKENS", env["SIM_KV_TOKENS"])
    if env.get("SIM_CRASH_AFTER"):
        cfg.crash_after = _int("SIM_CRASH_AFTER", env["SIM_CRASH_AFTER"])
    cfg.never_healthy = env.get("SIM_NEVER_HEALTHY", "") not in ("", "0", "false")
    cfg.control = env.get("SIM_CONTROL", "") not in ("", "0", "false")
    cfg.power_model = env.get("SIM_POWER_MODEL") or None
    return cfg
