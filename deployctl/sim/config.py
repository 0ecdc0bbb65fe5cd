"""The simulator's settings: TGI's launcher flags (the same command line as the engine) and SIM_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from deployctl.sim.latency import LatencyModel


@dataclass
class SimConfig:
    model_id: str = "deployctl/simulated-model"
    hostname: str = "0.0.0.0"
    port: int = 80
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    max_batch_prefill_tokens: int = 4146
    max_concurrent_requests: int = 128
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
    # SIM_POWER_MODEL: simulated power limits and energy counters (sim/power.py) for `power tune --simulate`.
    power_model: str | None = None
    num_shard: int = 1
    version: str = "3.3.4-sim"
    sha: str = "deployctl-simulator"


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
    return float(value) if value not in (None, "") else default


def from_args(argv: list[str], env: dict[str, str] | None = None) -> SimConfig:
    """Give the settings from TGI launcher arguments and the environment (flags win, as in TGI)."""
    env = dict(os.environ if env is None else env)
    cfg = SimConfig()
    for flag, attr in {**_INT_FLAGS, **_STR_FLAGS}.items():
        name = flag[2:].upper().replace("-", "_")
        if env.get(name):
            setattr(cfg, attr, int(env[name]) if flag in _INT_FLAGS else env[name])
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
            setattr(cfg, _INT_FLAGS[flag], int(value))
        elif flag in _STR_FLAGS:
            setattr(cfg, _STR_FLAGS[flag], value)
    cfg.load_seconds = _env_float(env, "SIM_LOAD_SECONDS", cfg.load_seconds)
    cfg.latency = LatencyModel(
        ttft_base_ms=_env_float(env, "SIM_TTFT_BASE_MS", cfg.latency.ttft_base_ms),
        prefill_tokens_per_s=_env_float(env, "SIM_PREFILL_TOKENS_PER_S", cfg.latency.prefill_tokens_per_s),
        itl_ms=_env_float(env, "SIM_ITL_MS", cfg.latency.itl_ms),
        itl_per_stream_ms=_env_float(env, "SIM_ITL_PER_STREAM_MS", cfg.latency.itl_per_stream_ms),
    )
    if env.get("SIM_CRASH_AFTER"):
        cfg.crash_after = int(env["SIM_CRASH_AFTER"])
    cfg.never_healthy = env.get("SIM_NEVER_HEALTHY", "") not in ("", "0", "false")
    cfg.power_model = env.get("SIM_POWER_MODEL") or None
    return cfg
