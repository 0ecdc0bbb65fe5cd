"""The load options `bench` and `power tune` share: presets, bounded numbers, the list of loads, and
the one merge of flags over a preset.

Every number a user gives either command is one of the bounded types below, checked when the flag
is parsed (and again when a config is made from Python), so `nan`, `inf`, `1e-300` or `10000000`
is refused before a request is sent or a power cap is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from deployctl.errors import InputError

Mode = Literal["closed", "open"]

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


@dataclass(frozen=True)
class Bounded:
    """A number type with its bounds: finite, an integer or not, between `low` and `high` (in `unit`)."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False  # more than `low`, not `low` itself
    unit: str = ""

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        low = f"more than {_num(self.low)}" if self.low_open else f"at least {_num(self.low)}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind}, {low} and at most {_num(self.high)}{unit}"

    def check(self, value: Any, flag: str) -> Any:
        """Give `value` (as int or float) if it is within bounds; an InputError naming `flag` otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{flag} {str(value)[:40]}: must be {self.describe()}")
        number = float(value)
        below = number <= self.low if self.low_open else number < self.low
        if not math.isfinite(number) or below or number > self.high or (self.integer and number != int(number)):
            raise InputError(f"{flag} {_shown(value)}: must be {self.describe()}")
        return int(number) if self.integer else number

    def parse(self, text: str, flag: str) -> Any:
        """Give the number in `text`, checked (what a flag's string becomes)."""
        try:
            value: float = int(text) if self.integer else float(text)
        except (TypeError, ValueError):
            raise InputError(f"{flag} {str(text)[:40]!r}: must be {self.describe()}") from None
        return self.check(value, flag)


def _shown(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"{float(value):g}"
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


# The bounded types of both commands' numbers. Loads: concurrency or requests/s of one level.
LOAD = Bounded(0, MAX_LOAD, low_open=True)
CONCURRENCY = Bounded(1, MAX_LOAD, integer=True, unit="requests in flight")
RATE = Bounded(0, MAX_LOAD, low_open=True, unit="requests/s")
TOKENS = Bounded(1, MAX_TOKENS, integer=True, unit="tokens")
REQUESTS = Bounded(1, MAX_REQUESTS, integer=True)
WARMUP = Bounded(0, MAX_REQUESTS, integer=True)
SLO_MS = Bounded(1e-3, 3.6e6, unit="ms")
COST = Bounded(0, 1e15)
# power tune: a window or a settle longer than an hour per cap is a typo; caps more than 1 W apart
# (NVML takes milliwatts, but boards move in whole watts) and at most MAX_CAPS of them.
WINDOW_S = Bounded(0, 3600, low_open=True, unit="s")
SETTLE_S = Bounded(0, 3600, unit="s")
STEP_W = Bounded(1, 1000, unit="W")
FRACTION = Bounded(0, 1, low_open=True)
MAX_CAPS = 64


def parse_loads(text: str, flag: str = "loads", what: str = "loads") -> list[float]:
    """Give the loads (or caps: `what`) of '1,2,4,8': positive numbers, at most MAX_LOAD each, at most 1,000 of them."""
    parts = [x for x in text.split(",") if x.strip()]
    if not parts or len(parts) > 1000:
        raise InputError(f"{flag} {text[:40]!r}: give 1 to 1,000 comma-separated numbers, e.g. 1,2,4,8")
    values = []
    for x in parts:
        try:
            value = float(x)
        except ValueError:
            raise InputError(f"{flag} {text[:40]!r} is not a comma-separated list of numbers") from None
        if not math.isfinite(value) or not 0 < value <= MAX_LOAD:
            raise InputError(f"{flag} {text[:40]!r}: {what} must be positive numbers up to {_num(MAX_LOAD)}")
        values.append(value)
    return values


@dataclass(frozen=True)
class LoadChoice:
    """What load to put on the engine, after the flags, the preset and the defaults."""

    mode: Mode
    loads: list[float]
    prompt_tokens: int
    output_tokens: int


def choose_load(
    preset: str | None,
    *,
    concurrency: list[float] | None,
    rate: list[float] | None,
    prompt_tokens: int | None,
    output_tokens: int | None,
    defaults: dict[str, Any],
) -> LoadChoice:
    """Give the load: the flags over the preset's values over `defaults` (concurrency, output_tokens), each checked."""
    p = PRESETS.get(preset or "", {})
    if concurrency and rate:
        raise InputError("give --concurrency or --rate, not both")
    loads = _first(rate, concurrency, p.get("concurrency"), defaults.get("concurrency"))
    if not loads:
        raise InputError("give --concurrency 1,2,4 (closed loop) or --rate 1,2,4 (open loop), or --preset")
    flag = "--rate" if rate else "--concurrency"
    return LoadChoice(
        mode="open" if rate else "closed",
        loads=[LOAD.check(v, flag) for v in loads],
        prompt_tokens=TOKENS.check(_first(prompt_tokens, p.get("prompt_tokens"), 256), "--prompt-tokens"),
        output_tokens=TOKENS.check(
            _first(output_tokens, p.get("output_tokens"), defaults["output_tokens"]), "--output-tokens"
        ),
    )


def _first(*values: Any) -> Any:
    """Give the first value that was given (0 and [] count: the bounds refuse them, not a fallback)."""
    return next((v for v in values if v is not None), None)
