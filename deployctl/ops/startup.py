"""What the engine allocated at start-up against what the plan promised: read from its log, kept in the stack.

The plan says how many KV-cache tokens the engine's memory rule gives (engines/<name>.py MEMORY_RULES) and so
how many full-length requests fit at once. The engine says what it really got in one log line at
start-up (vLLM: "GPU KV cache size: N tokens" and "Maximum concurrency for L tokens per request: X.XXx";
TGI: "KV-cache blocks: N, size: B"). `up` reads that line once the model answers and keeps both in
.deployctl/startup.json; `status` shows them; `up` warns when the engine got less than the plan said.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deployctl import engines, fsio
from deployctl.errors import DeployctlError
from deployctl.plan import Plan
from deployctl.stackdir import STATE_DIR

STARTUP_FILE = "startup.json"  # in the stack's .deployctl/
# The engine may round the cache to whole blocks (vLLM: 16 tokens; TGI: its BLOCK_SIZE) and the plan
# works in the same blocks: less than 1% short is rounding, not a shortfall worth a warning.
SHORT_BY = 0.01
LOG_LINES = 5000  # how much of the engine's log to read for the report (vLLM prints it within its first 200)


@dataclass(frozen=True)
class KvReport:
    """Planned and actual KV-cache tokens and concurrency of one start."""

    revision: int
    request_tokens: int  # the request length both concurrencies are for (the plan's max_total_tokens)
    planned_kv_tokens: int
    planned_concurrency: float
    actual_kv_tokens: int | None  # None: the engine printed no report (yet)
    actual_concurrency: float | None
    engine_line: str  # the line it was read from, as the engine printed it

    @property
    def short(self) -> bool:
        """Whether the engine got less KV cache than the plan promised."""
        return self.actual_kv_tokens is not None and self.actual_kv_tokens < self.planned_kv_tokens * (1 - SHORT_BY)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "short": self.short}

    def warning(self) -> str | None:
        """Give the warning `up` prints when the engine got less than planned, else None."""
        if not self.short or self.actual_kv_tokens is None:
            return None
        return (
            f"the engine allocated {self.actual_kv_tokens:,} KV-cache tokens, the plan {self.planned_kv_tokens:,}: "
            f"{self.actual_concurrency or 0:.2f} requests of {self.request_tokens:,} tokens fit at once, not "
            f"{self.planned_concurrency:.2f}. Something else holds GPU memory, or the engine's rule changed: "
            "run `deployctl doctor`, or lower limits.max_total_tokens"
        )


def compare(plan: Plan, log: str, revision: int) -> KvReport:
    """Give the plan's KV tokens and concurrency beside what the engine's log says it allocated."""
    limits = plan.limits
    length = limits.max_total_tokens
    said = engines.get(plan.engine.kind).startup_report(log, length)
    actual_concurrency = None
    if said is not None:
        actual_concurrency = said.concurrency if said.concurrency is not None else round(said.kv_tokens / length, 2)
    return KvReport(
        revision=revision,
        request_tokens=length,
        planned_kv_tokens=limits.kv_cache_tokens,
        planned_concurrency=round(limits.kv_cache_tokens / length, 2),
        actual_kv_tokens=said.kv_tokens if said else None,
        actual_concurrency=actual_concurrency,
        engine_line=said.line if said else "",
    )


def record(stack_dir: Path, report: KvReport) -> None:
    """Keep the report in the stack's state (.deployctl/startup.json), replacing the last start's."""
    state = stack_dir / STATE_DIR
    state.mkdir(mode=0o700, exist_ok=True)
    data = (json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n").encode()
    fsio.write_atomic(state / STARTUP_FILE, data, within=stack_dir)


def read(stack_dir: Path) -> KvReport | None:
    """Give the report `up` kept for the stack, or None when there is none (or it is not one)."""
    path = stack_dir / STATE_DIR / STARTUP_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(fsio.read_bounded(path, 64 * 1024, "the start-up report"))
    except (DeployctlError, ValueError, RecursionError):  # unreadable or not JSON: nothing to show
        return None
    if not isinstance(raw, dict):
        return None
    raw.pop("short", None)
    try:
        return KvReport(**raw)
    except TypeError:  # fields of another version: nothing to show
        return None
