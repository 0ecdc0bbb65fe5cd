"""The load options `bench` and `power tune` share: presets, bounds, and the list of loads."""

from __future__ import annotations

from typing import Any

from deployctl.errors import InputError

PRESETS: dict[str, dict[str, Any]] = {
    # A help desk: short answers, the first token is what users feel.
    "ttft": {"prompt_tokens": 512, "output_tokens": 16, "concurrency": [1, 2, 4, 8, 16], "slo_ttft_ms": 500.0},
    # Long generation: steady token rate matters.
    "sustained": {"prompt_tokens": 512, "output_tokens": 2048, "concurrency": [1, 2, 4, 8], "slo_itl_ms": 100.0},
}


# Beyond these a sweep is a typo, not a benchmark: 100,000 concurrent streams or requests per
# second is past any single engine; 10^6 requests per level or tokens per request likewise.
MAX_LOAD = 100_000
MAX_REQUESTS = 1_000_000
MAX_TOKENS = 1_000_000


def _num(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def parse_loads(text: str) -> list[float]:
    """Give the loads of '1,2,4,8' (positive numbers)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{text!r}: loads must be positive numbers")
    return values
