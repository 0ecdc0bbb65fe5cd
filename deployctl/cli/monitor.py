"""`deployctl monitor` and `deployctl exporter`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import folder_option, json_option, spec_file_option
from deployctl.cli.output import echo_json

PERCENTILES = ["p50", "p90", "p95", "p99", "p999"]


@click.command()
@folder_option("--stack-dir", help="The stack to watch (default: stack_dir of the spec).")
@spec_file_option
@click.option("--slo-ttft", type=float, help="SLO: time to first token, ms (default: monitoring.slo_ttft_ms).")
@click.option("--slo-itl", type=float, help="SLO: inter-token latency, ms (default: monitoring.slo_itl_ms).")
@click.option(
    "--slo-percentile",
    type=click.Choice(PERCENTILES),
    help="Share of requests held to the SLOs (default: monitoring.slo_percentile, p99).",
)
@click.option(
    "--exporter",
    "exporters",
    multiple=True,
    metavar="HOST:PORT",
    help="Where `deployctl exporter` serves (default 127.0.0.1:9401; none for a simulated stack).",
)
@click.option("--no-gpus", is_flag=True, help="No GPU exporter: leave out its scrape job, alerts and dashboard.")
@folder_option(
    "-o",
    "--output",
    default=Path("deployctl-monitoring"),
    help="Folder to write (replaced whole when deployctl wrote it).",
)
@json_option
def monitor(
    stack_dir: Path | None,
    spec_path: Path | None,
    slo_ttft: float | None,
    slo_itl: float | None,
    slo_percentile: str | None,
    exporters: tuple[str, ...],
    no_gpus: bool,
    output: Path,
    as_json: bool,
) -> None:
    """Render the stack's monitoring for a Prometheus on this host: scrape configuration (the engine's
    /metrics, the GPU exporter), alert rules from the plan and the SLOs, Grafana dashboards.

    Then: `prometheus --config.file=OUT/prometheus.yml`, or copy rules.yml and the dashboards into
    the site's own. The Compose stack's own profile: `monitoring: {enabled: true}` in the spec.
    What each alert means and what to do: docs/monitoring.md.

    \b
    Examples:
      deployctl monitor --stack-dir ./deployctl-stack --slo-ttft 500 --slo-itl 50 -o ./monitoring
      deployctl monitor --no-gpus --json | jq '.alerts'
    """
    from deployctl import spec as specs
    from deployctl.ops import monitor as ops

    loaded = specs.load(spec_path)
    m = loaded.monitoring
    result = ops.render(
        stack_dir=stack_dir or loaded.stack_dir,
        out_dir=output,
        slo_ttft_ms=slo_ttft if slo_ttft is not None else m.slo_ttft_ms,
        slo_itl_ms=slo_itl if slo_itl is not None else m.slo_itl_ms,
        slo_percentile=slo_percentile or m.slo_percentile,
        exporters=exporters,
        gpus=False if no_gpus else None,
    )
    if as_json:
        echo_json(result.as_dict())
        return
    click.echo(f"wrote {len(result.files)} files to {result.out_dir} for stack {result.stack} ({result.engine})")
    click.echo(f"scrapes: engine {', '.join(result.engine_targets)}; GPUs {', '.join(result.gpu_targets) or 'none'}")
    click.echo(f"alerts: {', '.join(result.alerts)}")
    click.echo(f"run:  prometheus --config.file={result.out_dir}/prometheus.yml --web.listen-address=127.0.0.1:9090")


@click.command()
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=9401, show_default=True, help="Port to listen on.")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Also serve the free space of this folder's file system (the model folder, for the disk alerts).",
)
@click.option("--once", is_flag=True, help="Print one reading in Prometheus's text format and exit.")
@json_option
def exporter(bind: str, port: int, paths: tuple[Path, ...], once: bool, as_json: bool) -> None:
    """Serve the GPUs' NVML readings (power, limit, temperature, clocks, clock event reasons, memory,
    energy) for Prometheus, without DCGM. Read-only: it never sets anything.

    Serving: `deployctl exporter --port 9401 --path /srv/models/NAME` until Ctrl-C or SIGTERM,
    at http://127.0.0.1:9401/metrics (with --json: one line saying where, once it listens).
    Exit code 3 when NVML cannot be read (no driver).

    \b
    Examples:
      deployctl exporter --once | grep deployctl_gpu_power
      deployctl exporter --once --path . --json | jq '.metrics'
    """
    from deployctl.ops import monitor as ops

    if once:
        text = ops.exporter_once(paths)
        if as_json:
            echo_json({"metrics": text})
        else:
            click.echo(text, nl=False)
        return

    def ready(serving: Any) -> None:
        if as_json:
            echo_json({"serving": serving.url, "gpus": serving.gpus}, line=True)
        else:
            click.echo(f"serving {serving.gpus} GPU(s) at {serving.url} (Ctrl-C stops)", err=True)

    ops.serve_exporter(bind=bind, port=port, paths=paths, ready=ready)
