"""`deployctl health`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from deployctl.cli import output
from deployctl.cli.options import endpoint_engine_option, folder_option, json_option, seconds, spec_file_option
from deployctl.cli.output import echo_json


@click.command()
@click.option("--endpoint", help="URL of the endpoint (default: the stack's).")
@folder_option("--stack-dir", help="Stack whose plan /info must match (default: stack_dir of the spec).")
@spec_file_option
@click.option("--api-key-env", help="Environment variable holding the API key (default: the stack's .env).")
@endpoint_engine_option
@click.option("--max-ttft-ms", type=float, default=2000.0, show_default=True, help="Slower first tokens mean degraded.")
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, callback=seconds, help="Seconds for each request."
)
@click.option(
    "--watch", type=float, default=None, metavar="SECONDS", callback=seconds, help="Repeat every SECONDS until Ctrl-C."
)
@json_option
def health(
    endpoint: str | None,
    stack_dir: Path | None,
    spec_path: Path | None,
    api_key_env: str | None,
    engine: str | None,
    max_ttft_ms: float,
    timeout: float,
    watch: float | None,
    as_json: bool,
) -> None:
    """Check the endpoint: /health, /info against the plan, one short streamed generation.

    With --endpoint and no stack, the engine is asked which API it speaks (TGI's /info or vLLM's
    /v1/models), or named with --engine.

    Exit code: 0 healthy, 1 degraded (slow, or /info differs from the plan), 5 down or no stack,
    2 bad input. With --json, each check is one JSON object on one line, failures included (with
    --watch, one line per check), so appending runs to a file makes JSON Lines.

    \b
    Examples:
      deployctl health                                  # the stack of ./deployctl.yaml
      deployctl health --stack-dir ./deployctl-stack --max-ttft-ms 500 --json
      deployctl health --json >> llm-health.jsonl       # in cron: */5 * * * *
    """
    from deployctl.ops import probing

    target = probing.resolve_target(
        endpoint=endpoint, stack_dir=stack_dir, spec_path=spec_path, api_key_env=api_key_env, engine=engine
    )
    while True:
        report = probing.health(target, max_ttft_ms=max_ttft_ms, timeout=timeout)
        if as_json:
            echo_json({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **report.as_dict()}, line=True)
        else:
            _print(report)
        if watch is None:
            raise click.exceptions.Exit(report.exit_code)
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(report.exit_code) from None


def _print(report: object) -> None:
    from rich.table import Table

    colour = {"healthy": "green", "degraded": "yellow", "down": "red"}[report.status]  # type: ignore[attr-defined]
    # Details carry what the server said (its model id, its errors): escaped, never markup.
    table = Table(title=f"{output.cell(report.endpoint)}: [{colour}]{report.status}[/{colour}]")  # type: ignore[attr-defined]
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    for c in report.checks:  # type: ignore[attr-defined]
        table.add_row(c.name, "[green]OK[/green]" if c.ok else "[red]FAIL[/red]", output.cell(c.detail))
    output.console().print(table)
