"""`deployctl monitor` and `deployctl exporter`: render a stack's monitoring for a Prometheus on this host,
and serve the GPUs' NVML readings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deployctl.errors import InputError, NotRunning

MARKER = "prometheus.yml"  # the file that says a folder holds monitoring deployctl wrote


@dataclass(frozen=True)
class MonitorResult:
    out_dir: str
    stack: str
    engine: str
    files: list[str]
    alerts: list[str]
    dashboards: list[str]
    engine_targets: list[str]
    gpu_targets: list[str]
    thresholds: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _host_port(endpoint: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    return parts.netloc


def _check_target(value: str, flag: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c in value for c in " /\"'"):
        raise InputError(f"{flag} {value!r} is not HOST:PORT", f"e.g. {flag} 127.0.0.1:9401")
    return value


def render(
    *,
    stack_dir: Path,
    out_dir: Path,
    slo_ttft_ms: float | None = None,
    slo_itl_ms: float | None = None,
    slo_percentile: str = "p99",
    exporters: tuple[str, ...] = (),
    gpus: bool | None = None,
) -> MonitorResult:
    """Write the stack's monitoring (scrape config, rules, thresholds, Grafana files) for a Prometheus on this host.

    The SLOs (`slo_ttft_ms`, `slo_itl_ms` at `slo_percentile`) are checked as the spec's are (thresholds.Slo).

    The engine is scraped where the stack publishes it; the GPU exporter at `exporters` (default
    127.0.0.1:9401, `deployctl exporter`'s), unless the stack is simulated or `gpus` is False.
    """
    from deployctl import stackdir
    from deployctl.monitoring import render as monitoring
    from deployctl.monitoring import rules, scrape, thresholds
    from deployctl.monitoring.gpu import EXPORTER_PORT

    stack = stackdir.read_stack(stack_dir)
    if stack is None:
        raise NotRunning(
            f"no stack in {stack_dir}", "run `deployctl render` or `deployctl up` first, or pass --stack-dir"
        )
    # A simulated stack has no GPUs to watch unless an exporter is named (fake boards, in a rehearsal).
    with_gpus = gpus if gpus is not None else (bool(exporters) or not stack.info.simulate)
    gpu_targets = tuple(_check_target(e, "--exporter") for e in exporters) or (
        (f"127.0.0.1:{EXPORTER_PORT}",) if with_gpus else ()
    )
    t = thresholds.from_plan(stack.plan, thresholds.Slo(slo_ttft_ms, slo_itl_ms, slo_percentile))
    where = monitoring.Where(
        targets=scrape.Targets(engine=(_host_port(stack.info.endpoint),), gpu=gpu_targets if with_gpus else ()),
        prometheus_url="http://127.0.0.1:9090",
        with_gpus=with_gpus,
    )
    files = monitoring.files(t, where)
    stackdir.write_tree(files, out_dir, marker=MARKER, what="monitoring folder")
    return MonitorResult(
        out_dir=str(out_dir.absolute()),
        stack=t.stack,
        engine=t.engine,
        files=sorted(files),
        alerts=sorted({a.name for a in rules.alerts(t, gpus=with_gpus)}),
        dashboards=sorted(n for n in files if n.startswith("dashboard-")),
        engine_targets=list(where.targets.engine),
        gpu_targets=list(where.targets.gpu),
        thresholds=asdict(t),
    )


def exporter_once(paths: tuple[Path, ...]) -> str:
    """Give one reading of every GPU in Prometheus's text format (what a scrape would get)."""
    from deployctl.hardware import inventory
    from deployctl.monitoring import exporter

    return exporter.once(paths, inventory.NVML_LIB)


def serve_exporter(
    *,
    bind: str,
    port: int,
    paths: tuple[Path, ...],
    ready: Callable[[Any], None],
    stop: threading.Event | None = None,
) -> None:
    """Serve the GPUs' readings on bind:port until Ctrl-C or SIGTERM (or `stop`)."""
    from deployctl.hardware import inventory
    from deployctl.monitoring import exporter

    exporter.serve(bind=bind, port=port, paths=paths, nvml_lib=inventory.NVML_LIB, ready=ready, stop=stop)
