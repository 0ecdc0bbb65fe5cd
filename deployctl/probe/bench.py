"""`deployctl bench`: sweep a load, find the highest load that meets the SLO, write JSON, CSV and plots."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployctl import __version__
from deployctl import load_options as opt
from deployctl.boundedparse import read_json
from deployctl.engines import dialects
from deployctl.errors import DeployctlError, InputError
from deployctl.http import check_url
from deployctl.load_options import MAX_LOAD, MAX_REQUESTS, MAX_TOKENS, PRESETS, _num, parse_loads
from deployctl.probe import load
from deployctl.probe.dialect import model_info
from deployctl.probe.stats import LevelStats, Slo, max_qps_under_slo, summarize
from deployctl.progress import Progress, quiet
from deployctl.safepath import check_dir
from deployctl.terminal import shown

Mode = Literal["closed", "open"]
__all__ = ["MAX_LOAD", "MAX_REQUESTS", "MAX_TOKENS", "PRESETS", "BenchConfig", "parse_loads"]


@dataclass(frozen=True)
class BenchConfig:
    endpoint: str
    mode: Mode
    loads: list[float]
    requests: int = 100
    warmup: int = 5
    prompt_tokens: int = 256
    output_tokens: int = 64
    api: load.Api = "generate"
    dialect: str = dialects.TGI.name  # the API the server speaks, by name (engines/dialects.py)
    seed: int = 42
    slo: Slo = field(default_factory=Slo)
    cost: float | None = None
    currency: str = ""
    api_key: str | None = None
    preset: str | None = None
    label: str = ""  # what `bench compare` calls this run (default: the stack's engine, GPUs, power cap)
    model_name: str | None = None  # the name clients use (the plan's served name), for titles

    def __post_init__(self) -> None:
        # Checked before any request (the CLI checked each flag as it parsed it; Python callers get the same).
        if not self.loads:
            raise InputError(f"loads must be positive numbers up to {_num(MAX_LOAD)}")
        for value in self.loads:
            opt.LOAD.check(value, "--rate" if self.mode == "open" else "--concurrency")
        checks: dict[str, tuple[float | None, opt.Bounded]] = {
            "--requests": (self.requests, opt.REQUESTS),
            "--warmup": (self.warmup, opt.WARMUP),
            "--prompt-tokens": (self.prompt_tokens, opt.TOKENS),
            "--output-tokens": (self.output_tokens, opt.TOKENS),
            "--slo-ttft": (self.slo.ttft_ms, opt.SLO_MS),
            "--slo-itl": (self.slo.itl_ms, opt.SLO_MS),
            "--slo-e2e": (self.slo.e2e_ms, opt.SLO_MS),
            "--cost": (self.cost, opt.COST),
        }
        for flag, (given, bounds) in checks.items():
            if given is not None:
                bounds.check(given, flag)
        if len(self.currency) > 16 or not self.currency.isprintable():
            raise InputError("--currency: at most 16 printable characters, e.g. EUR")
        if len(self.label) > MAX_LABEL or not self.label.isprintable():
            raise InputError(f"--label: at most {MAX_LABEL} printable characters, e.g. '2x rtx4090 300 W'")


MAX_LABEL = 200  # characters of a run's --label: a name for a table's column, not a document


def check_output_dir(path: Path) -> Path:
    """Give `path` if results can be written there: checked before a sweep spends minutes."""
    check_dir(path, "--output-dir")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--output-dir {path}: {existing} is not a writable folder")
    return path


@dataclass
class BenchResult:
    deployctl_version: str
    started_at: str
    config: dict[str, Any]
    info: dict[str, Any] | None
    prompt_tokens_source: str
    levels: list[LevelStats]
    max_qps_under_slo: float | None
    max_qps_level: float | None
    cost_per_qps: float | None
    # The best level was the sweep's top: the engine may well do more, so the figure is a lower bound.
    max_qps_lower_bound: bool = False
    label: str = ""

    @property
    def title(self) -> str:
        """Give the model's name (the served name, never a path inside the container) and the request shape."""
        name = self.config.get("model_name") or (self.info or {}).get("model_id") or "model"
        return f"{name}: {self.config['prompt_tokens']} in / {self.config['output_tokens']} out tokens"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = [lv.as_dict() for lv in self.levels]
        return out


def _info(endpoint: str, dialect: dialects.Dialect, api_key: str | None) -> dict[str, Any] | None:
    """Give what the server says about its model, as a bench result records it (None when it says nothing)."""
    _status, card = model_info(endpoint, dialect, api_key, 5.0)
    return dialect.bench_info(card) if card is not None else None


def run(config: BenchConfig, progress: Progress = quiet) -> BenchResult:
    """Run every load level in turn and give the result."""
    check_url(config.endpoint, "--endpoint")
    dialect = dialects.get(config.dialect)
    info = _info(config.endpoint, dialect, config.api_key)
    if info is None:
        raise DeployctlError(
            f"nothing answers at {config.endpoint}{dialect.model_info_path}",
            "start the stack (deployctl up) or pass --endpoint",
        )
    workload = load.Workload(
        endpoint=config.endpoint,
        prompt_tokens=config.prompt_tokens,
        output_tokens=config.output_tokens,
        api=config.api,
        dialect=config.dialect,
        seed=config.seed,
        api_key=config.api_key,
    )
    levels: list[LevelStats] = []
    note = ""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for value in config.loads:
        label = f"{'concurrency' if config.mode == 'closed' else 'rate'} {value:g}"

        def tick(n: int, label: str = label) -> None:
            progress(label, n, config.requests + config.warmup)

        if config.mode == "closed":
            results, span, note = asyncio.run(
                load.closed_loop(workload, int(value), config.requests, config.warmup, tick)
            )
        else:
            results, span, note = asyncio.run(load.open_loop(workload, value, config.requests, config.warmup, tick))
        levels.append(summarize(config.mode, value, results, span, config.slo))
    best = max_qps_under_slo(levels)
    qps = best.requests_per_s if best else None
    cfg = asdict(config)
    cfg.pop("api_key")
    return BenchResult(
        deployctl_version=__version__,
        started_at=started,
        config=cfg,
        info=info,
        prompt_tokens_source=note,
        levels=levels,
        max_qps_under_slo=qps,
        max_qps_level=best.load if best else None,
        cost_per_qps=(config.cost / qps) if (config.cost and qps) else None,
        max_qps_lower_bound=best is not None and best.load == max(config.loads),
        label=config.label,
    )


CSV_FIELDS = [
    "mode",
    "load",
    "requests",
    "completed",
    "requests_per_s",
    "output_tokens_per_s",
    "goodput_rps",
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "ttft_ms_mean",
    "itl_ms_p50",
    "itl_ms_p90",
    "itl_ms_p99",
    "tpot_ms_p50",
    "tpot_ms_p90",
    "e2e_ms_p50",
    "e2e_ms_p90",
    "e2e_ms_p99",
    "send_lag_ms_p99",
    "errors",
    "resent",
    "meets_slo",
]


def to_csv(result: BenchResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for lv in result.levels:
        row: dict[str, Any] = {
            k: getattr(lv, k) for k in ("mode", "load", "requests", "completed", "resent", "meets_slo")
        }
        row["requests_per_s"] = round(lv.requests_per_s, 3)
        row["output_tokens_per_s"] = round(lv.output_tokens_per_s, 1)
        row["goodput_rps"] = None if lv.goodput_rps is None else round(lv.goodput_rps, 3)
        for metric in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "send_lag_ms"):
            summary = getattr(lv, metric)
            for p in ("p50", "p90", "p99", "mean"):
                key = f"{metric}_{p}"
                if key in CSV_FIELDS:
                    v = summary.get(p)
                    row[key] = None if v is None else round(v, 2)
        row["errors"] = ";".join(f"{k}={v}" for k, v in sorted(lv.errors.items()))
        writer.writerow(row)
    return buf.getvalue()


def plot(result: BenchResult, latency_png: Path, throughput_png: Path) -> None:
    """Draw latency percentiles vs load and throughput vs load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = result.config["mode"]
    xlabel = "concurrent requests" if mode == "closed" else "offered load (requests/s)"
    xs = [lv.load for lv in result.levels]
    slo = result.config["slo"]
    title = f"{result.label}: {result.title}" if result.label else result.title

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, metric, name, target in (
        (axes[0], "ttft_ms", "Time to first token", slo.get("ttft_ms")),
        (axes[1], "itl_ms", "Inter-token latency", slo.get("itl_ms")),
    ):
        for p, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ys = [getattr(lv, metric).get(p) for lv in result.levels]
            ax.plot(xs, [y if y is not None else float("nan") for y in ys], style, label=p)
        if target:
            ax.axhline(target, color="red", linewidth=1, label=f"SLO {target:g} ms")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("milliseconds")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(latency_png, dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.plot(xs, [lv.output_tokens_per_s for lv in result.levels], "o-", color="tab:blue")
    left.set_title("Output tokens per second")
    left.set_ylabel("tokens/s")
    right.plot(xs, [lv.requests_per_s for lv in result.levels], "s-", color="tab:green", label="completed requests/s")
    if any(lv.goodput_rps is not None for lv in result.levels):
        right.plot(
            xs,
            [lv.goodput_rps or 0 for lv in result.levels],
            "^--",
            color="tab:orange",
            label="goodput: requests meeting the SLO/s",
        )
    if mode == "open":
        right.plot(xs, xs, ":", color="grey", label="offered load")
    best = result.max_qps_under_slo
    if best:
        right.axhline(best, color="red", linewidth=1, label=f"max under SLO: {best:.2f} req/s")
    right.set_title("Requests per second")
    right.set_ylabel("requests/s")
    right.legend()
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(throughput_png, dpi=110)
    plt.close(fig)


def write(result: BenchResult, out_dir: Path, stem: str = "bench") -> dict[str, Path]:
    """Write JSON, CSV and the two PNGs; give their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "csv": out_dir / f"{stem}.csv",
        "latency_png": out_dir / f"{stem}-latency.png",
        "throughput_png": out_dir / f"{stem}-throughput.png",
    }
    paths["json"].write_text(json.dumps(result.as_dict(), indent=2, sort_keys=True) + "\n")
    paths["csv"].write_text(to_csv(result))
    plot(result, paths["latency_png"], paths["throughput_png"])
    return paths


class _Strict(BaseModel):
    # Extra fields are a newer deployctl's, not an error; numbers must be finite JSON numbers.
    model_config = ConfigDict(extra="ignore", strict=True)


Number = Annotated[float, Field(allow_inf_nan=False)]


class _Percentiles(_Strict):
    p50: Number | None = None
    p90: Number | None = None


class _Level(_Strict):
    load: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    ttft_ms: _Percentiles
    itl_ms: _Percentiles
    output_tokens_per_s: Number | None = None
    requests_per_s: Number | None = None


class _Info(_Strict):
    model_id: Annotated[str, Field(max_length=256)] | None = None


class _Config(_Strict):
    currency: Annotated[str, Field(max_length=16)] | None = None


class _SavedResult(_Strict):
    """What `bench compare` reads from a bench JSON file, checked before a value is used."""

    label: Annotated[str, Field(max_length=MAX_LABEL)] | None = None
    max_qps_lower_bound: bool | None = None
    config: _Config
    levels: Annotated[list[_Level], Field(max_length=1000)]
    info: _Info | None = None
    max_qps_under_slo: Number | None = None
    cost_per_qps: Number | None = None


def read(path: Path) -> dict[str, Any]:
    """Give a saved bench result's data, checked (size, nesting, types); a bad file is one InputError."""
    data = read_json(path, what="bench result")
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a bench result (expected a JSON object, got {type(data).__name__})")
    if "levels" not in data or "config" not in data:
        raise InputError(f"{path}: not a bench result (no levels)", "pass the bench.json that `deployctl bench` wrote")
    try:
        checked = _SavedResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise InputError(f"{path}: not a bench result: {shown(where)}: {first['msg']}{more}") from None
    out = checked.model_dump()
    if out["info"] and out["info"]["model_id"] is not None:
        out["info"]["model_id"] = shown(out["info"]["model_id"])  # printed in a table: no escape codes
    out["label"] = shown(out["label"] or path.parent.name or path.name, MAX_LABEL)  # older files: their folder
    return out


def compare_values(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, float | None]]:
    """Give rows (metric, A, B, B/A) of raw values comparing two runs, per load level both have, and overall."""

    def ratio(x: Any, y: Any) -> float | None:
        return round(y / x, 4) if isinstance(x, int | float) and isinstance(y, int | float) and x else None

    def row(metric: str, x: Any, y: Any) -> tuple[str, Any, Any, float | None]:
        return (metric, x, y, ratio(x, y))

    def at_least(r: dict[str, Any]) -> str:
        return "at least (the sweep's top)" if r.get("max_qps_lower_bound") else ""

    rows: list[tuple[str, Any, Any, float | None]] = [
        ("run", a.get("label"), b.get("label"), None),
        ("model", (a.get("info") or {}).get("model_id"), (b.get("info") or {}).get("model_id"), None),
    ]
    rows.append(row("max QPS under SLO", a.get("max_qps_under_slo"), b.get("max_qps_under_slo")))
    if a.get("max_qps_lower_bound") or b.get("max_qps_lower_bound"):
        rows.append(("max QPS is", at_least(a) or "measured", at_least(b) or "measured", None))
    cur = shown(a["config"].get("currency") or b["config"].get("currency") or "")
    rows.append(row(f"cost per QPS {cur}".strip(), a.get("cost_per_qps"), b.get("cost_per_qps")))
    by_load_b = {lv["load"]: lv for lv in b["levels"]}
    for la in a["levels"]:
        lb = by_load_b.get(la["load"])
        if lb is None:
            continue
        tag = f"@{la['load']:g}"
        for label, key, p in (
            ("TTFT p50 ms", "ttft_ms", "p50"),
            ("TTFT p90 ms", "ttft_ms", "p90"),
            ("ITL p50 ms", "itl_ms", "p50"),
            ("ITL p90 ms", "itl_ms", "p90"),
        ):
            rows.append(row(f"{label} {tag}", la[key][p], lb[key][p]))
        for label, key in (("output tok/s", "output_tokens_per_s"), ("requests/s", "requests_per_s")):
            rows.append(row(f"{label} {tag}", la[key], lb[key]))
    return rows
