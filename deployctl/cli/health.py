"""`deployctl health`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from deployctl.cli import output
from deployctl.cli.options import echo_json, json_option
from deployctl.errors import InputError, NotRunning


@click.command()
@click.option("--endpoint", help="URL of the endpoint (default: the stack's).")
@click.option(
    "--stack-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Stack whose plan /info must match (default: stack_dir of the spec).",
)
@click.option("--api-key-env", help="Environment variable holding the API key (default: the stack's .env).")
@click.option("--max-ttft-ms", type=float, default=2000.0, show_default=True, help="Slower first tokens mean degraded.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds for each request.")
@click.option("--watch", type=float, default=None, metavar="SECONDS", help="Repeat every SECONDS until Ctrl-C.")
@json_option
def health(
    endpoint: str | None,
    stack_dir: Path | None,
    api_key_env: str | None,
    max_ttft_ms: float,
    timeout: float,
    watch: float | None,
    as_json: bool,
) -> None:
    """Check the endpoint: /health, /info against the plan, one short streamed generation.

    Exit code: 0 healthy, 1 degraded (slow, or /info differs from the plan), 5 down or no stack,
    2 bad input. With --json, one line per check (JSON Lines), failures included.

    \b
    Examples:
      deployctl health                                  # the stack of ./deployctl.yaml
      deployctl health --stack-dir ./deployctl-stack --max-ttft-ms 500 --json
      deployctl health --json >> llm-health.jsonl       # in cron: */5 * * * *
    """
    from deployctl import spec
    from deployctl.probe import health as probe

    directory = stack_dir or spec.load(None).stack_dir
    from deployctl.compose.render import read_stack

    stack = read_stack(directory)
    expected = probe.Expected.from_plan(stack.plan) if stack else None
    key = stack.api_key if stack else None
    endpoint = endpoint or (stack.info.endpoint if stack else None)
    if not endpoint:
        raise NotRunning(
            f"no stack in {directory} (nothing to check)",
            "pass --endpoint URL or --stack-dir DIR, or run `deployctl up`",
        )
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise InputError(f"--api-key-env: {api_key_env} is not set")
    while True:
        report = probe.check(endpoint, expected, key, max_ttft_ms=max_ttft_ms, timeout=timeout)
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
    table = Table(title=f"{report.endpoint}: [{colour}]{report.status}[/{colour}]")  # type: ignore[attr-defined]
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    for c in report.checks:  # type: ignore[attr-defined]
        table.add_row(c.name, "[green]OK[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    output.console().print(table)
