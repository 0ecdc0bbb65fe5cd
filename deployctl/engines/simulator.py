"""The protocol simulator as a stand-in engine: its image and the latency model a plan implies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from deployctl import __version__
from deployctl.engines import dialects
from deployctl.plan import Plan


def _sources_digest() -> str:
    """Give a short hash of what goes into the simulator image (deployctl/sim/*.py and its Dockerfile)."""
    package = Path(__file__).parents[1]
    h = hashlib.sha256()
    for path in sorted([*(package / "sim").glob("*.py"), package / "images" / "sim.Dockerfile"]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:10]


# Named by its sources as well as the version: an image built from older simulator code (which
# may not speak every engine's API) is never taken for the current one.
# DEPLOYCTL_SIM_IMAGE: the test suite runs on a simulator image of its own (deployctl-test/...),
# never rebuilding or removing the user's.
SIM_IMAGE = os.environ.get("DEPLOYCTL_SIM_IMAGE") or f"deployctl/tgi-sim:{__version__}-{_sources_digest()}"
LOAD_SECONDS = 2


def sim_env(plan: Plan) -> dict[str, str]:
    """Give the simulator's latency settings for a plan (read by deployctl.sim.config)."""
    floor_ms = plan.decode_floor_ms or 10.0
    # Prefill is compute-bound: about half of an RTX 4090's 165 fp16 TFLOP/s, 2 FLOPs per parameter per token.
    prefill_rate = int(0.5 * 165e12 * plan.num_shard / (2 * plan.model.parameters))
    return {
        # Which of its personalities the simulator takes: the one that speaks the engine's dialect.
        "SIM_ENGINE": dialects.get(plan.engine.dialect).simulated_by,
        "SIM_LOAD_SECONDS": str(LOAD_SECONDS),
        "SIM_TTFT_BASE_MS": f"{15 + floor_ms:.1f}",
        "SIM_PREFILL_TOKENS_PER_S": str(prefill_rate),
        "SIM_ITL_MS": f"{floor_ms * 1.25:.1f}",
        "SIM_ITL_PER_STREAM_MS": f"{floor_ms * 0.02:.2f}",
        # The KV pool the simulated engine has: its start-up log line says it (ops/startup.py) and /metrics
        # reports KV usage against it (deployctl/monitoring/facts.py).
        "SIM_KV_TOKENS": str(plan.limits.kv_cache_tokens),
    }


# `--sim-fault NAME=VALUE`: rehearse failures (and test them) without touching the engine.
FAULTS = {
    "crash-after": "SIM_CRASH_AFTER",  # exit after N generation requests (the restart policy brings it back)
    "never-healthy": "SIM_NEVER_HEALTHY",  # /health answers 503 for ever
    "load-seconds": "SIM_LOAD_SECONDS",  # a slow start
    "ttft-base-ms": "SIM_TTFT_BASE_MS",
    "itl-ms": "SIM_ITL_MS",
    "control": "SIM_CONTROL",  # only the /_sim/* control routes (POST /_sim/stall?seconds=S)
    "power-model": "SIM_POWER_MODEL",  # simulated power limits and energy counters, for `power tune --simulate`
    # A smaller KV pool than the plan's: the start-up report says so (up warns) and load fills it (the KV
    # alerts' rehearsal).
    "kv-tokens": "SIM_KV_TOKENS",
}
# The boards the simulator's power model knows (deployctl/sim/power.py MODELS; a test keeps the two equal:
# the simulator's image carries deployctl/sim only, and nothing outside sim/ imports it).
POWER_MODELS = ("rtx4090",)
# What each switch accepts: (kind, largest value). An hour of loading, a minute per token and a
# billion requests are far past any rehearsal; beyond them a value is a typo.
_FAULT_VALUES: dict[str, tuple[str, float]] = {
    "crash-after": ("count", 1e9),
    "never-healthy": ("switch", 1),
    "control": ("switch", 1),
    "load-seconds": ("seconds", 3600),
    "ttft-base-ms": ("milliseconds", 60_000),
    "itl-ms": ("milliseconds", 60_000),
    "power-model": ("model", 0),
    "kv-tokens": ("count", 1e9),
}


def parse_faults(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Give {switch: value} for `--sim-fault NAME[=VALUE]` items; a bad one is an InputError."""
    from deployctl.errors import InputError

    out: dict[str, str] = {}
    for item in items:
        name, _, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if name not in FAULTS:
            raise InputError(f"--sim-fault {name}: unknown", f"known: {', '.join(FAULTS)}")
        kind, largest = _FAULT_VALUES[name]
        if kind == "model":
            if value not in POWER_MODELS:
                raise InputError(
                    f"--sim-fault {item}: {name} needs one of {', '.join(POWER_MODELS)}, e.g. {name}=rtx4090"
                )
            out[name] = value
            continue
        if kind == "switch":
            if value not in ("", "1", "0", "true", "false"):
                raise InputError(f"--sim-fault {item}: {name} takes no value (or 1/0)")
            out[name] = value or "1"
            continue
        try:
            number = int(value) if kind == "count" else float(value)
        except ValueError:
            what = "a whole number" if kind == "count" else f"a number of {kind}"
            raise InputError(f"--sim-fault {item}: {name} needs {what}, e.g. {name}=3") from None
        if not 0 <= number <= largest:
            raise InputError(f"--sim-fault {item}: {name} must be between 0 and {largest:g} {kind}")
        out[name] = value
    return out


def fault_env(faults: dict[str, str]) -> dict[str, str]:
    """Give the simulator variables for fault switches (checked by parse_faults); any switch opens /_sim/*."""
    checked = parse_faults([f"{k}={v}" if v else k for k, v in faults.items()])
    env = {FAULTS[name]: value or "1" for name, value in checked.items()}
    if env:
        env["SIM_CONTROL"] = "1"
    return env
