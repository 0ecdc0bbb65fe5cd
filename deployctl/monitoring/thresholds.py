"""The alerts' thresholds: derived from the plan (KV pool, GPUs' memory, model size, power cap) and the SLOs.

Each threshold carries its reason, which the alert's annotation and docs/monitoring.md repeat.
`health` and `status` judge /metrics by these same numbers (deployctl/monitoring/facts.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deployctl.errors import InputError
from deployctl.plan import Plan

# Multi-window, multi-burn-rate alerts: The Site Reliability Workbook, chapter 5 "Alerting on SLOs",
# table 5-8 (recommended parameters for a 30-day budget): (long window, short window, burn rate,
# severity). The short window is 1/12 of the long one, so the alert stops soon after the burn does.
BURN_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "critical"),  # 2% of the 30-day budget in an hour: page
    ("6h", "30m", 6.0, "critical"),  # 5% in six hours: page
    ("1d", "2h", 3.0, "warning"),  # 10% in a day: ticket
    ("3d", "6h", 1.0, "warning"),  # 10% in three days: ticket
)
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p999": 0.999}
DEFAULT_PERCENTILE = "p99"
# docs/bench.md: a load level meets its SLO with fewer than 1% of requests failed.
ERROR_RATIO = 0.01
KV_HIGH_BOUNDS = (0.80, 0.95)
KV_FULL = 0.98
POWER_AT_CAP = 0.97
TEMPERATURE_MARGIN_C = 5.0
# Used when the board does not report its slowdown temperature: below any RTX 40 board's slowdown point.
TEMPERATURE_FALLBACK_C = 83.0
GPU_MEMORY_BOUNDS = (0.90, 0.99)
DISK_FREE_FRACTION = 0.05


@dataclass(frozen=True)
class Slo:
    """The latency targets alerts watch: bench's --slo-ttft/--slo-itl and the share of requests held to them."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    percentile: str = DEFAULT_PERCENTILE

    def __post_init__(self) -> None:
        for name, value in (("--slo-ttft", self.ttft_ms), ("--slo-itl", self.itl_ms)):
            if value is not None and not 0 < value <= 3_600_000:
                raise InputError(f"{name} {value:g}: must be more than 0 and at most an hour (in ms)")
        if self.percentile not in PERCENTILES:
            raise InputError(f"--slo-percentile {self.percentile}: unknown", f"one of {', '.join(PERCENTILES)}")

    @property
    def objective(self) -> float:
        """Give the share of requests that must meet the targets (p99: 0.99)."""
        return PERCENTILES[self.percentile]

    @property
    def budget(self) -> float:
        """Give the share that may miss them (the error budget)."""
        return round(1 - self.objective, 6)

    def burn_windows(self) -> list[tuple[str, str, float, str]]:
        """Give the workbook's windows whose burn rate can be reached: rate x budget below 1.

        With a p90 objective (10% budget) a 14.4x burn would need 144% of requests to miss, so
        that window could never fire and is left out; the slower windows still watch.
        """
        return [w for w in BURN_WINDOWS if w[2] * self.budget < 1]


@dataclass(frozen=True)
class Threshold:
    value: float
    reason: str


@dataclass(frozen=True)
class Thresholds:
    """Every number an alert (and `health`) compares with, and why it is that number."""

    stack: str
    engine: str
    kv_high: Threshold
    kv_full: Threshold
    error_ratio: Threshold
    power_at_cap: Threshold
    temperature_margin_c: Threshold
    gpu_memory: Threshold
    disk_free_bytes: Threshold | None  # None: the plan has no model folder on this host (a preset)
    disk_free_fraction: Threshold
    model_path: str | None
    power_limit_w: float | None  # the plan's cap (power.limit_watts), watched for being lost
    slo: Slo = field(default_factory=Slo)
    # Multiplies every `for:` hold (1.0 in production; the e2e test shortens them).
    hold_scale: float = 1.0

    def hold(self, seconds: float) -> str:
        """Give a `for:` duration, scaled, in Prometheus's notation."""
        s = max(1, round(seconds * self.hold_scale))
        return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return round(min(bounds[1], max(bounds[0], value)), 3)


def kv_high(plan: Plan) -> Threshold:
    """Give the KV usage at which one more request of the plan's longest length no longer fits."""
    pool, longest = plan.limits.kv_cache_tokens, plan.limits.max_total_tokens
    lo, hi = KV_HIGH_BOUNDS
    if pool <= 0:
        return Threshold(0.90, "the plan records no KV pool size: 90%")
    room = 1 - longest / pool
    value = _clamp(room, KV_HIGH_BOUNDS)
    why = (
        f"past {value:.0%} of the {pool:,}-token KV pool a request of the plan's max_total_tokens "
        f"({longest:,}) no longer fits at once"
    )
    if room < lo:
        why += f" (that is {max(room, 0):.0%}, so low that it would fire on normal load: held at {lo:.0%})"
    elif room > hi:
        why = f"{hi:.0%}: the pool holds {pool // longest} requests of the longest length; near full, new ones wait"
    return Threshold(value, why)


def gpu_memory(plan: Plan) -> Threshold:
    """Give the share of a GPU's memory past which something beyond the plan is using it."""
    _lo, hi = GPU_MEMORY_BOUNDS
    if not plan.gpus:
        return Threshold(hi, f"no GPU in the plan: {hi:.0%}")
    g = plan.gpus[0]
    # The engine's rule keeps engine_reserve free (vLLM: 1 - utilization of the card; TGI: its wiggle
    # room). Half of that gone means another process, or a leak, takes memory the engine counts on.
    planned = g.total - g.engine_reserve + g.engine_reserve / 2
    value = _clamp(planned / g.total, GPU_MEMORY_BOUNDS) if g.total else hi
    return Threshold(
        value,
        f"the engine's rule leaves {g.engine_reserve / 2**30:.1f} GiB of GPU {g.index}'s "
        f"{g.total / 2**30:.1f} GiB free; past {value:.0%} used, half of that room is gone",
    )


def from_plan(plan: Plan, slo: Slo | None = None, *, hold_scale: float = 1.0) -> Thresholds:
    """Give the thresholds for a plan and the SLOs the user set."""
    weights = plan.model.weight_bytes
    disk = (
        Threshold(
            float(weights),
            f"a new revision of the model ({weights / 1e9:.1f} GB) installed beside this one would not fit",
        )
        if plan.model.path
        else None
    )
    return Thresholds(
        stack=plan.name,
        engine=plan.engine.kind,
        kv_high=kv_high(plan),
        kv_full=Threshold(
            KV_FULL,
            "no free KV block: vLLM preempts running requests (recomputes them), TGI keeps new ones in its queue",
        ),
        error_ratio=Threshold(ERROR_RATIO, "bench counts a load level as failed at 1% failed requests"),
        power_at_cap=Threshold(
            POWER_AT_CAP, "drawing within 3% of the enforced limit: the cap, not the work, sets the clocks"
        ),
        temperature_margin_c=Threshold(
            TEMPERATURE_MARGIN_C,
            f"within 5 °C of the board's slowdown temperature (NVML; {TEMPERATURE_FALLBACK_C:g} °C where it "
            "does not say), the driver is about to lower the clocks",
        ),
        gpu_memory=gpu_memory(plan),
        disk_free_bytes=disk,
        disk_free_fraction=Threshold(
            DISK_FREE_FRACTION, "below 5% free, logs, Docker layers and bundle installs start to fail"
        ),
        model_path=plan.model.path if plan.model.path else None,
        power_limit_w=float(plan.power_limit_watts) if plan.power_limit_watts else None,
        slo=slo or Slo(),
        hold_scale=hold_scale,
    )
