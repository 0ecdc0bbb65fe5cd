"""`deployctl up`, `down`, `status`, `logs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import echo_json, json_option, load_spec, seconds, sim_fault_option, spec_options

stack_dir_option = click.option(
    "--stack-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The stack directory (default: stack_dir of ./deployctl.yaml, or ./deployctl-stack).",
)


def _stack_dir(stack_dir: Path | None, spec_path: Path | None = None) -> Path:
    if stack_dir is not None:
        return stack_dir
    from deployctl import spec

    return spec.load(spec_path).stack_dir


@click.command()
@spec_options
@click.option("--simulate", is_flag=True, help="Run the TGI-protocol simulator in place of the engine (no GPU needed).")
@click.option(
    "--timeout",
    type=float,
    callback=seconds,
    help="Seconds to wait for /health (default: 60 simulated, minutes for real weights).",
)
@click.option("--sim-base", help="Base image for building the simulator image if it is missing.")
@click.option("--skip-power", is_flag=True, help="Start without applying the spec's power.limit_watts.")
@sim_fault_option
@json_option
def up(
    as_json: bool,
    simulate: bool,
    timeout: float | None,
    sim_base: str | None,
    faults: dict[str, str],
    skip_power: bool,
    **kwargs: Any,
) -> None:
    """Plan, render and start the stack, then wait until the model answers.

    \b
    Examples:
      deployctl up --simulate            # the whole flow on any machine with Docker
      deployctl up --gpus 2 -f deployctl.yaml
    """
    from rich.console import Console

    from deployctl.compose import lifecycle

    spec = load_spec(kwargs)
    console = Console(stderr=True)
    with console.status("starting", spinner="dots") as status:

        def report(p: lifecycle.Progress) -> None:
            line = f" · {p.last_log}" if p.last_log else ""
            status.update(f"[bold]{p.phase}[/bold] {p.elapsed_s:5.1f}s{line}")

        try:
            result = lifecycle.up(
                spec,
                simulate=simulate,
                report=report,
                timeout_s=timeout,
                sim_base=sim_base,
                faults=faults,
                skip_power=skip_power,
            )
        except lifecycle.UpFailed as exc:
            status.stop()
            _print_failure(console, exc)
            raise
    if as_json:
        echo_json(result.__dict__)
        return
    if result.power:
        click.echo(f"power: {result.power}")
    auth = ' -H "Authorization: Bearer $API_KEY"' if result.api_key else ""
    mode = " (simulated engine)" if result.simulate else ""
    click.echo(f"ready{mode} in {result.seconds_to_healthy:.1f}s: {result.endpoint}  model {result.model_id}")
    click.echo(
        f"try:  curl {result.endpoint}/generate{auth} -H 'Content-Type: application/json' "
        """-d '{"inputs":"Hello","parameters":{"max_new_tokens":20}}'"""
    )
    click.echo(f"stack: {result.stack_dir}  (deployctl status | logs | health | down)")


def _print_failure(console: Any, exc: Any) -> None:
    if exc.log_tail:
        console.print("[bold]last log lines:[/bold]", highlight=False)
        console.print(exc.log_tail, markup=False, highlight=False)
    for d in exc.diagnoses:
        console.print(f"[bold red]likely cause:[/bold red] {d.cause}: {d.hint}", highlight=False)
    if exc.stack_dir:
        console.print(
            f"the stack is left as it is for inspection: deployctl logs / deployctl down --stack-dir {exc.stack_dir}",
            highlight=False,
        )


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@json_option
def down(stack_dir: Path | None, spec_path: Path | None, as_json: bool) -> None:
    """Stop the stack and remove its containers and network.

    \b
    Example:
      deployctl down --stack-dir ./deployctl-stack
    """
    from deployctl.compose import lifecycle

    directory = _stack_dir(stack_dir, spec_path)
    left = lifecycle.down(directory)
    if as_json:
        echo_json({"stack_dir": str(directory.absolute()), "left": left})
    elif left:
        click.echo(f"stopped, but these remain: {', '.join(left)}", err=True)
    else:
        click.echo(f"stopped and removed the stack in {directory}")
    if left:
        raise click.exceptions.Exit(1)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@json_option
def status(stack_dir: Path | None, spec_path: Path | None, as_json: bool) -> None:
    """Show each service's state, health, uptime, restarts and the endpoint.

    Exits 0 when every service runs, none is unhealthy and the endpoint answers; 1 otherwise.

    \b
    Example:
      deployctl status --json | jq '.services[].health'
    """
    from deployctl.compose.lifecycle import probe_health
    from deployctl.compose.stack import Stack

    stack = Stack(_stack_dir(stack_dir, spec_path))
    services = stack.services()
    answering = probe_health(stack.info.endpoint) == 200
    # Docker's own healthcheck says "starting" until its first interval has passed.
    ok = answering and bool(services) and all(s.state == "running" and s.health != "unhealthy" for s in services)
    data = {
        "project": stack.info.project,
        "endpoint": stack.info.endpoint,
        "simulate": stack.info.simulate,
        "plan_hash": stack.info.plan_hash,
        "answering": answering,
        "ok": ok,
        "services": [s.as_dict() for s in services],
    }
    if as_json:
        echo_json(data)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{stack.info.project}: {stack.info.endpoint} ({'answering' if answering else 'not answering'})"
        )
        for col in ("service", "state", "health", "uptime", "restarts", "image"):
            table.add_column(col)
        for s in services:
            table.add_row(s.service, s.state, s.health or "-", _uptime(s.uptime_s), str(s.restarts), s.image)
        if not services:
            table.add_row("-", "not running", "-", "-", "-", "-")
        Console().print(table)
    if not ok:
        raise click.exceptions.Exit(1)


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@click.option("--follow", "-F", "follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--tail", default=100, show_default=True, help="How many lines to show from the end.")
def logs(stack_dir: Path | None, spec_path: Path | None, follow: bool, tail: int) -> None:
    """Show the stack's logs, or follow them.

    \b
    Example:
      deployctl logs -F -n 20
    """
    from deployctl.compose.stack import Stack

    stack = Stack(_stack_dir(stack_dir, spec_path))
    if not follow:
        click.echo(stack.logs(tail=tail))
        return
    try:
        for line in stack.follow_logs(tail=tail):
            click.echo(line)
    except KeyboardInterrupt:
        pass
