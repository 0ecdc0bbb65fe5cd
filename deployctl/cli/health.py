"""`deployctl health`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from deployctl.cli.options import echo_json, json_option, seconds
from deployctl.errors import InputError


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
    api_key_env: str | None,
    max_ttft_ms: float,
    timeout: float,
    watch: float | None,
    as_json: bool,
) -> None:
    """Check the endpoint: /health, /info against the plan, one short streamed generation.

    Exit code: 0 healthy, 1 degraded (slow, or /info differs from the plan), 2 down.

    \b
    Examples:
      deployctl health                                  # the stack of ./deployctl.yaml
      deployctl health --endpoint http://10.0.0.5:8080 --json
      */5 * * * * deployctl health --json >> /var/log/llm-health.jsonl   # cron
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
        raise InputError(f"no endpoint: {directory} is not a stack", "pass --endpoint URL or --stack-dir DIR")
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise InputError(f"--api-key-env: {api_key_env} is not set")
    while True:
        report = probe.check(endpoint, expected, key, max_ttft_ms=max_ttft_ms, timeout=timeout)
        if as_json:
            echo_json({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **report.as_dict()})
        else:
            _print(report)
        if watch is None:
            raise click.exceptions.Exit(report.exit_code)
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(report.exit_code) from None


def _print(report: object) -> None:
    from rich.console import Console
    from rich.table import Table

    colour = {"healthy": "green", "degraded": "yellow", "down": "red"}[report.status]  # type: ignore[attr-defined]
    table = Table(title=f"{report.endpoint}: [{colour}]{report.status}[/{colour}]")  # type: ignore[attr-defined]
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    for c in report.checks:  # type: ignore[attr-defined]
        table.add_row(c.name, "[green]OK[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    Console().print(table)
