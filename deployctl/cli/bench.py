"""`deployctl bench` and `deployctl bench compare`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from deployctl import load_options as opt
from deployctl.cli import output
from deployctl.cli.options import (
    bounded_option,
    endpoint_engine_option,
    folder_option,
    json_option,
    spec_file_option,
    token_options,
)
from deployctl.cli.output import echo_json


class DefaultRun(click.Group):
    """`deployctl bench --concurrency 1,2` runs; `deployctl bench compare A B` compares."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultRun)
def bench() -> None:
    """Measure latency, throughput and the highest load that meets an SLO; compare runs.

    `deployctl bench OPTIONS` is `deployctl bench run OPTIONS`: see `deployctl bench run --help`
    for the options.

    \b
    Examples:
      deployctl bench --preset ttft --slo-ttft 500 --cost 4200 --currency EUR -o results/1gpu
      deployctl bench compare results/1gpu/bench.json results/2gpu/bench.json
    """


@bench.command("run")
@click.option("--endpoint", help="URL (default: the stack's endpoint).")
@folder_option("--stack-dir", help="The stack to measure (default: stack_dir of the spec).")
@spec_file_option
@endpoint_engine_option
@click.option(
    "--preset",
    type=click.Choice(sorted(["ttft", "sustained"])),
    help="ttft: 512 in / 16 out; sustained: 512 in / 2048 out.",
)
@click.option("--concurrency", help="Closed loop at these concurrencies, e.g. 1,2,4,8,16.")
@click.option("--rate", help="Open loop (Poisson arrivals) at these request rates per second, e.g. 1,2,4.")
@bounded_option("--requests", bounds=opt.REQUESTS, default=100, help="Measured requests per level.")
@bounded_option("--warmup", bounds=opt.WARMUP, default=5, help="Requests per level left out of the figures.")
@token_options(opt.TOKENS, output_default=64)
@click.option(
    "--api",
    type=click.Choice(["generate", "chat", "completions"]),
    default=None,
    help="Route to load (default: the engine's own, generate or completions).",
)
@click.option("--seed", type=int, default=42, show_default=True)
@bounded_option("--slo-ttft", bounds=opt.SLO_MS, help="SLO: time to first token, ms.")
@bounded_option(
    "--slo-itl", bounds=opt.SLO_MS, help="SLO: inter-token latency, ms (each request's worst gap for goodput)."
)
@bounded_option("--slo-e2e", bounds=opt.SLO_MS, help="SLO: end-to-end latency, ms.")
@click.option(
    "--slo-percentile",
    type=click.Choice(["p50", "p90", "p99"]),
    default="p90",
    show_default=True,
    help="A level meets the SLO when this percentile is within every target.",
)
@bounded_option("--cost", bounds=opt.COST, help="Hardware price (any currency) for cost per QPS.")
@click.option("--currency", default="", help="Label for --cost, e.g. EUR.")
@click.option("--api-key-env", help="Variable holding the API key (default: the stack's .env).")
@click.option(
    "--label",
    help="What `bench compare` calls this run (default: the stack's engine, GPUs and power cap, e.g. 'tgi 2x rtx4090 300 W').",
)
@folder_option("-o", "--output-dir", default=Path("bench-results"))
@json_option
def run(output_dir: Path, currency: str, as_json: bool, **flags: Any) -> None:
    """Sweep a load against the endpoint; write JSON, CSV and PNG plots.

    \b
    Examples:
      deployctl bench run --preset ttft --slo-ttft 500 --cost 4200 --currency EUR -o results/1gpu
      deployctl bench run --rate 10,20 --requests 40 --slo-ttft 500 --slo-itl 50 -o results/open
      deployctl bench run --concurrency 1,4,16 --api chat --json    # --endpoint URL: another server
    """
    from deployctl.ops import probing

    # Click names each flag as probing.bench_config names its parameter: they pass through as they are.
    with output.Progress() as progress:
        done = probing.bench(output_dir=output_dir, progress=progress, currency=currency, **flags)
    result, paths, config = done.result, done.files, done.config
    mode = config.mode
    if as_json:
        echo_json({**result.as_dict(), "files": {k: str(v) for k, v in paths.items()}})
        return
    _print_table(result)
    click.echo(f"prompt length from {result.prompt_tokens_source}")
    if result.max_qps_under_slo is not None:
        cost_text = f", cost per QPS {result.cost_per_qps:,.2f} {currency}".rstrip() if result.cost_per_qps else ""
        at = f"at {mode} load {result.max_qps_level:g}"
        if result.max_qps_lower_bound and result.max_qps_level is not None:
            flag = "--concurrency" if mode == "closed" else "--rate"
            wider = ",".join(f"{result.max_qps_level * k:g}" for k in (1, 2, 4))
            click.echo(
                f"max QPS under SLO: at least {result.max_qps_under_slo:.2f} req/s ({at}, the sweep's top: every level "
                f"up to it met the SLO, so the engine may do more; sweep higher, e.g. {flag} {wider}){cost_text}"
            )
        else:
            click.echo(f"max QPS under SLO: {result.max_qps_under_slo:.2f} req/s ({at}){cost_text}")
    elif config.slo.any:
        click.echo("no load level met the SLO")
    click.echo("wrote " + ", ".join(str(v) for v in paths.values()))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _print_table(result: Any) -> None:
    from rich.table import Table

    mode = result.config["mode"]
    # The run's label and the served name (or the server's model id): escaped, never markup.
    table = Table(title=output.cell(f"{result.label}: {result.title}" if result.label else result.title))
    for col in (
        "concurrency" if mode == "closed" else "rate/s",
        "req/s",
        "tok/s",
        "TTFT p50",
        "TTFT p90",
        "TTFT p99",
        "ITL p50",
        "ITL p90",
        "TPOT p50",
        "E2E p90",
        "errors",
        "SLO",
    ):
        table.add_column(col, justify="right")
    for lv in result.levels:
        slo = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "-"}[lv.meets_slo]
        errors = ", ".join(f"{k} {v}" for k, v in lv.errors.items()) or "0"
        if lv.resent:
            errors += f" ({lv.resent} resent)"  # the server closed an idle connection: sent again, not failed
        table.add_row(
            f"{lv.load:g}",
            f"{lv.requests_per_s:.2f}",
            f"{lv.output_tokens_per_s:.0f}",
            _ms(lv.ttft_ms.p50),
            _ms(lv.ttft_ms.p90),
            _ms(lv.ttft_ms.p99),
            _ms(lv.itl_ms.p50),
            _ms(lv.itl_ms.p90),
            _ms(lv.tpot_ms.p50),
            _ms(lv.e2e_ms.p90),
            errors,
            slo,
        )
    output.console().print(table)


@bench.command("compare")
@click.argument("a", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("b", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@json_option
def compare(a: Path, b: Path, as_json: bool) -> None:
    """Put two bench runs side by side (for example one GPU against two).

    \b
    Example:
      deployctl bench compare results/1gpu/bench.json results/2gpu/bench.json --json
    """
    from deployctl.ops import probing

    records = [{"metric": m, "a": x, "b": y, "b_over_a": r} for m, x, y, r in probing.compare_runs(a, b)]
    run = next((r for r in records if r["metric"] == "run"), None)  # each run's label (--label, or its stack's)
    # A label or model id from a file is text: never markup, never escape codes (output.rows escapes every cell).
    output.rows(
        records,
        {"metric": "metric", "a": "A", "b": "B", "b_over_a": "B/A"},
        as_json=as_json,
        title=f"A = {run['a']} ({a})   B = {run['b']} ({b})" if run else f"A = {a}   B = {b}",
        text=_compared,
        right=("A", "B", "B/A"),
    )


_TEXT_ROWS = ("run", "model", "max QPS is")  # rows of words, not numbers: no ratio to show


def _compared(record: Mapping[str, Any]) -> list[str]:
    """Give a `bench compare` row as text: two decimals, `-` for no value, the ratio as `1.23x`."""

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    ratio = record["b_over_a"]
    no_ratio = "" if record["metric"] in _TEXT_ROWS else "-"
    return [record["metric"], fmt(record["a"]), fmt(record["b"]), f"{ratio:.2f}x" if ratio is not None else no_ratio]
