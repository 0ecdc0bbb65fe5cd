"""The protocol simulator as a stand-in engine: its image and the latency model a plan implies."""

from __future__ import annotations

import hashlib
from pathlib import Path

from deployctl import __version__
from deployctl.planner.types import Plan


def _sources_digest() -> str:
    """Give a short hash of what goes into the simulator image (deployctl/sim/*.py and its Dockerfile)."""
    package = Path(__file__).parents[1]
    h = hashlib.sha256()
    for path in sorted([*(package / "sim").glob("*.py"), package / "images" / "sim.Dockerfile"]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:10]


# Named by its sources as well as the version: an image built from older simulator code (which
# may not speak every engine's API) is never taken for the current one.
SIM_IMAGE = f"deployctl/tgi-sim:{__version__}-{_sources_digest()}"
LOAD_SECONDS = 2


def sim_env(plan: Plan) -> dict[str, str]:
    """Give the simulator's latency settings for a plan (read by deployctl.sim.config)."""
    floor_ms = plan.decode_floor_ms or 10.0
    # Prefill is compute-bound: about half of an RTX 4090's 165 fp16 TFLOP/s, 2 FLOPs per parameter per token.
    prefill_rate = int(0.5 * 165e12 * plan.num_shard / (2 * plan.model.parameters))
    return {
        "SIM_ENGINE": plan.engine.kind,  # which API the simulator speaks: the engine's
        "SIM_LOAD_SECONDS": str(LOAD_SECONDS),
        "SIM_TTFT_BASE_MS": f"{15 + floor_ms:.1f}",
        "SIM_PREFILL_TOKENS_PER_S": str(prefill_rate),
        "SIM_ITL_MS": f"{floor_ms * 1.25:.1f}",
        "SIM_ITL_PER_STREAM_MS": f"{floor_ms * 0.02:.2f}",
    }


# `--sim-fault NAME=VALUE`: rehearse failures (and test them) without touching the engine.
FAULTS = {
    "crash-after": "SIM_CRASH_AFTER",  # exit after N generation requests (the restart policy brings it back)
    "never-healthy": "SIM_NEVER_HEALTHY",  # /health answers 503 for ever
    "load-seconds": "SIM_LOAD_SECONDS",  # a slow start
    "ttft-base-ms": "SIM_TTFT_BASE_MS",
    "itl-ms": "SIM_ITL_MS",
}


def fault_env(faults: dict[str, str]) -> dict[str, str]:
    """Give the simulator variables for fault switches; an unknown switch is an InputError."""
    from deployctl.errors import InputError

    env = {}
    for name, value in faults.items():
        if name not in FAULTS:
            raise InputError(f"--sim-fault {name}: unknown", f"known: {', '.join(FAULTS)}")
        env[FAULTS[name]] = value or "1"
    return env
