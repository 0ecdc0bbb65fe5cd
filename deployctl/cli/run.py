"""`deployctl up`, `down`, `status`, `logs`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import (
    SPEC_FLAGS,
    folder_option,
    json_option,
    load_spec,
    seconds,
    sim_fault_option,
    spec_options,
)
from deployctl.cli.output import echo_json
from deployctl.errors import NotRunning

stack_dir_option = folder_option(
    "--stack-dir", help="The stack directory (default: stack_dir of ./deployctl.yaml, or ./deployctl-stack)."
)


def _stack_dir(stack_dir: Path | None, spec_path: Path | None = None) -> Path:
    if stack_dir is not None:
        return stack_dir
    from deployctl import spec

    return spec.load(spec_path).stack_dir


# The flags a stack remembers from its `up` (option name -> (spec key, flag)): a bare `up` keeps them.
MODE_FLAGS = {name: key_flag for name, key_flag in SPEC_FLAGS.items() if name != "stack_dir"}
_INT_OPTIONS = {"max_total_tokens", "max_input_tokens", "port"}


def _is_set(spec: Any, key: str) -> bool:
    """Give whether the spec file or a flag set `key` (dotted), as opposed to a default."""
    node = spec
    *sections, name = key.split(".")
    for section in sections:
        if section not in node.model_fields_set:
            return False
        node = getattr(node, section)
    return name in node.model_fields_set


def _keeping_mode(kwargs: dict[str, Any], simulate: bool | None) -> tuple[Any, bool, tuple[str, ...], list[str]]:
    """Give the spec, whether to simulate, the mode to record, and the flags kept from the stack's last `up`.

    A flag given now wins; then the spec file; then how the stack was started (a bare `up` after
    `up --simulate --engine vllm` stays simulated vLLM); then the defaults.
    """
    from deployctl.ops import upgrade

    given = {name: kwargs.get(name) for name in MODE_FLAGS if kwargs.get(name) is not None}
    spec = load_spec(dict(kwargs))
    remembered = dict(e.partition("=")[::2] for e in upgrade.started_with(spec.stack_dir))
    kept: list[str] = []
    if simulate is None:
        simulate = "simulate" in remembered
        if simulate:
            kept.append("--simulate")
    model_chosen = any(_is_set(spec, k) for k in ("model.path", "model.preset"))
    for name, (key, flag) in MODE_FLAGS.items():
        value = remembered.get(name)
        if value is None or name in given or _is_set(spec, key) or (key.startswith("model.") and model_chosen):
            continue
        kwargs[name] = int(value) if name in _INT_OPTIONS else Path(value) if name == "model_path" else value
        given[name] = kwargs[name]
        kept.append(f"{flag} {value}")
    if kept:
        spec = load_spec(dict(kwargs))
    for name in MODE_FLAGS:
        kwargs.pop(name, None)
    flags = tuple(f"{name}={Path(str(v)).absolute() if name == 'model_path' else v}" for name, v in given.items())
    started: tuple[str, ...] = (("simulate",) if simulate else ()) + flags
    return spec, simulate, started, kept


@click.command()
@spec_options
@click.option(
    "--simulate/--no-simulate",
    default=None,
    help="Run the protocol simulator in place of the engine (no GPU needed). A bare `up` keeps how the stack was started.",
)
@click.option(
    "--timeout",
    type=float,
    callback=seconds,
    help="Seconds to wait for /health (default: 60 simulated, minutes for real weights).",
)
@click.option("--sim-base", help="Base image for building the simulator image if it is missing.")
@click.option("--skip-power", is_flag=True, help="Start without applying the spec's power.limit_watts.")
@click.option("--dry-run", is_flag=True, help="Print what would change (compose file and plan diff) and exit.")
@click.option("--allow-open", is_flag=True, help="Serve a non-loopback bind without an API key, on purpose.")
@click.option("--replace", is_flag=True, help="Remove the project this stack ran under before its name changed.")
@sim_fault_option
@json_option
def up(
    as_json: bool,
    simulate: bool | None,
    timeout: float | None,
    sim_base: str | None,
    faults: dict[str, str],
    skip_power: bool,
    dry_run: bool,
    allow_open: bool,
    replace: bool,
    **kwargs: Any,
) -> None:
    """Plan, render and start the stack, then wait until the model answers.

    On a running stack this is an upgrade: the new revision replaces the running one, and if it does
    not answer /health within the plan's budget the last good revision is restored.

    \b
    Examples:
      deployctl up --simulate            # the whole flow on any machine with Docker
      deployctl up --simulate --engine vllm
      deployctl up --simulate --dry-run  # what an upgrade would change
      deployctl up --gpus 2 -f deployctl.yaml
    """
    from deployctl.cli import output
    from deployctl.ops import owner, stack, upgrade

    spec_path = owner.spec_file(kwargs.get("spec_path"))
    spec, simulate, started_with, kept = _keeping_mode(kwargs, simulate)
    if kept:
        click.echo(
            f"note: keeping how this stack was started: {' '.join(kept)} (flags or --no-simulate change it)", err=True
        )
    started = time.monotonic()
    with output.Progress() as progress:

        def report(
            what: str, done: float | None = None, total: float | None = None, /, *, detail: str | None = None
        ) -> None:
            line = f" · {detail}" if detail else ""
            progress.step(what, f"{time.monotonic() - started:5.1f}s{line}")

        try:
            options = upgrade.UpOptions(
                timeout_s=timeout,
                sim_base=sim_base,
                faults=faults,
                skip_power=skip_power,
                allow_open=allow_open,
                replace=replace,
                dry_run=dry_run,
            )
            result = upgrade.up(spec, options, spec_path=spec_path, simulate=simulate, report=report, mode=started_with)
        except stack.UpFailed as exc:
            _print_failure(progress, exc)
            raise
    if isinstance(result, upgrade.Preview):
        _print_preview(result, as_json)
        return
    if as_json:
        echo_json(result.__dict__)
        return
    for old in result.removed_projects:
        click.echo(f"removed {old}, the name this stack ran under before")
    if result.power:
        click.echo(f"power: {result.power}")
    mode = " (simulated engine)" if result.simulate else ""
    rev = f"revision {result.revision}"
    if result.previous_revision is not None and result.previous_revision != result.revision:
        rev = f"upgraded revision {result.previous_revision} -> {result.revision}"
    click.echo(
        f"ready{mode} in {result.seconds_to_healthy:.1f}s ({rev}): {result.endpoint}  {result.engine} model {result.model_id}"
    )
    click.echo(f"try:  {result.example}")
    if result.kv:
        click.echo(kv_line(result.kv))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"stack: {result.stack_dir}  (deployctl status | logs | health | rollback | down)")


def kv_line(kv: dict[str, Any]) -> str:
    """Give the line that sets the KV cache the plan promised beside what the engine allocated."""
    planned = f"planned {kv['planned_kv_tokens']:,} tokens ({kv['planned_concurrency']:.2f} x {kv['request_tokens']:,})"
    if kv["actual_kv_tokens"] is None:
        return f"KV cache: {planned}; the engine printed no allocation report"
    actual = f"engine allocated {kv['actual_kv_tokens']:,} ({kv['actual_concurrency']:.2f} x {kv['request_tokens']:,})"
    return f"KV cache: {planned}, {actual}{' (less than planned)' if kv['short'] else ''}"


def _print_preview(preview: Any, as_json: bool) -> None:
    if as_json:
        echo_json(preview.as_dict())
        return
    now = f"revision {preview.running_revision} runs" if preview.running else "nothing runs"
    if not preview.changed:
        click.echo(f"{preview.project}: {now}; nothing would change (dry run)")
        return
    click.echo(preview.diff, nl=False)
    for old in preview.renamed_from:
        click.echo(f"{old} still runs from this directory: `up --replace` would remove it")
    click.echo(f"{preview.project}: {now}; `deployctl up` would start revision {preview.next_revision} (dry run)")


def _print_failure(progress: Any, exc: Any) -> None:
    from deployctl.ops.upgrade import RolledBack

    if exc.log_tail:
        progress.say("last log lines:")
        for line in exc.log_tail.splitlines():
            progress.say(line)
    for d in exc.diagnoses:
        progress.say(f"likely cause: {d.cause}: {d.hint}")
    if exc.stack_dir and not isinstance(exc, RolledBack):
        progress.say(
            f"the stack is left as it is for inspection: deployctl logs / deployctl down --stack-dir {exc.stack_dir}"
        )


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@click.option("--project", help="Remove the project this stack ran under before it was renamed.")
@json_option
def down(stack_dir: Path | None, spec_path: Path | None, project: str | None, as_json: bool) -> None:
    """Stop the stack and remove its containers and network (only its own; nothing to stop is not an error).

    \b
    Example:
      deployctl down --stack-dir ./deployctl-stack
    """
    from deployctl.ops import stack

    directory = _stack_dir(stack_dir, spec_path)
    done = stack.down(directory, project=project)
    if done is None:
        if as_json:
            echo_json({"stack_dir": str(directory.absolute()), "left": [], "note": "no stack here: nothing to stop"})
        else:
            click.echo(f"note: no stack in {directory}: nothing to stop", err=True)
        return
    if as_json:
        echo_json({"stack_dir": str(directory.absolute()), "left": done.left, "stopped": done.found})
    elif done.left:
        click.echo(f"stopped, but these remain: {', '.join(done.left)}", err=True)
    elif done.found:
        click.echo(f"stopped and removed the stack in {directory}")
    else:
        click.echo(f"nothing of the stack in {directory} was running (rendered, never started): nothing to stop")
    if done.left:
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

    Exits 0 when every service runs, none is unhealthy and the endpoint answers; 1 when something
    runs but is unhealthy or not answering; 5 when nothing runs or there is no stack.

    \b
    Example:
      deployctl status --json | jq '.services[].health'
    """
    from deployctl.ops import stack

    found = stack.status(_stack_dir(stack_dir, spec_path))
    if as_json:
        echo_json(found.as_dict())
    else:
        from rich.table import Table

        from deployctl.cli import output

        answering = "answering" if found.answering else "not answering"
        title = f"{found.project} revision {found.revision}: {found.endpoint} ({answering})"
        table = Table(title=output.cell(title))
        for col in ("service", "state", "health", "uptime", "restarts", "image"):
            table.add_column(col)
        for s in found.services:  # what Docker says: escaped, never markup
            row = (s.service, s.state, s.health or "-", _uptime(s.uptime_s), str(s.restarts), s.image)
            table.add_row(*(output.cell(v) for v in row))
        if not found.services:
            table.add_row("-", "not running", "-", "-", "-", "-")
        output.console().print(table)
        if found.kv:
            click.echo(kv_line(found.kv))
        for old in found.other_projects:
            click.echo(f"{old} still runs from this directory under its old name: deployctl down --project {old}")
    if not found.services:
        raise click.exceptions.Exit(NotRunning.exit_code)
    if not found.ok:
        raise click.exceptions.Exit(1)


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@click.option("--follow", "-F", "follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--tail", default=100, show_default=True, help="How many lines to show from the end.")
def logs(stack_dir: Path | None, spec_path: Path | None, follow: bool, tail: int) -> None:
    """Show the stack's logs, or follow them (exit 5 when there is no stack; 130 when Ctrl-C or SIGTERM
    ends a follow, as for any interrupted command).

    \b
    Examples:
      deployctl logs -n 20
      deployctl logs -F -n 20            # follow until Ctrl-C (or SIGTERM)
    """
    from deployctl.ops import stack

    directory = _stack_dir(stack_dir, spec_path)
    if not follow:
        click.echo(stack.logs(directory, tail=tail))
        return
    from deployctl.interrupt import Guard

    # SIGTERM unwinds like Ctrl-C (exit 130, as for any interrupted command); closing the follow on the
    # way out stops `docker compose logs --follow` wherever the signal landed (in the follow or in echo).
    with Guard().installed():
        lines = stack.follow_logs(directory, tail=tail)
        try:
            for line in lines:
                click.echo(line)
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()


@click.command()
@stack_dir_option
@click.option("-f", "--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False), help="Spec file.")
@json_option
def rollback(stack_dir: Path | None, spec_path: Path | None, as_json: bool) -> None:
    """Go back to the last good revision before the running one, and wait until it answers.

    \b
    Example:
      deployctl rollback --stack-dir ./deployctl-stack
    """
    from deployctl.ops import upgrade

    result = upgrade.rollback(_stack_dir(stack_dir, spec_path))
    if as_json:
        echo_json(result.__dict__)
        return
    click.echo(
        f"rolled back from revision {result.from_revision} to {result.revision} in {result.seconds:.1f}s: "
        f"{result.endpoint} answers"
    )
