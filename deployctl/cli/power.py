"""`deployctl gpus`, `power show|set|reset`, `doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli import output
from deployctl.cli.options import echo_json, json_option

gpu_option = click.option(
    "--gpu", "gpu_refs", multiple=True, metavar="ID", help="A GPU index or UUID (repeatable; default: all)."
)
state_option = click.option(
    "--state-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where the original limits are kept (default /var/lib/deployctl/power-state.json).",
)


def _session() -> Any:
    from deployctl.hardware import inventory, nvml

    return nvml.session(inventory.NVML_LIB)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    output.console().print(table)


def _w(value: float | None) -> str:
    return "-" if value is None else f"{value:g} W"


@click.command()
@json_option
def gpus(as_json: bool) -> None:
    """List this machine's GPUs: memory, power, temperature, P2P (read through NVML).

    \b
    Example:
      deployctl gpus --json | jq '.gpus[].uuid'
    """
    with _session() as nvml:
        host = nvml.host()
    if as_json:
        echo_json(host.model_dump(mode="json"))
        return
    rows = [
        [
            str(g.index),
            g.name,
            g.uuid,
            g.pci_bus_id or "-",
            g.compute_capability or "-",
            f"{g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.1f} GiB",
            _w(g.power.draw_w),
            f"{_w(g.power.enforced_limit_w)} ({_w(g.power.min_limit_w)}-{_w(g.power.max_limit_w)})",
            f"{g.temperature_c}°C" if g.temperature_c is not None else "-",
            {True: "on", False: "off", None: "-"}[g.persistence_mode],
        ]
        for g in host.gpus
    ]
    p2p = ("yes" if host.p2p else "no") if len(host.gpus) > 1 else "n/a (one GPU)"
    title = f"driver {host.driver_version}, CUDA {host.cuda_driver_version}, P2P {p2p}"
    _table(title, ["#", "name", "uuid", "pci", "cc", "memory", "draw", "limit (range)", "temp", "persist"], rows)


@click.group()
def power() -> None:
    """Show, set, reset and persist GPU power limits (set/reset need root).

    \b
    Examples:
      deployctl power show
      sudo deployctl power set 300 --dry-run
      sudo deployctl power set 300 --persist
      sudo deployctl power reset
    """


@power.command("show")
@json_option
def show(as_json: bool) -> None:
    """Show each GPU's power draw, limits and allowed range.

    \b
    Example:
      deployctl power show --json
    """
    with _session() as nvml:
        found = nvml.gpus()
    rows = [{"index": g.index, "uuid": g.uuid, "name": g.name, **g.power.model_dump()} for g in found]
    if as_json:
        echo_json({"gpus": rows})
        return
    _table(
        "power",
        ["#", "name", "draw", "limit", "enforced", "default", "allowed"],
        [
            [
                str(r["index"]),
                r["name"],
                _w(r["draw_w"]),
                _w(r["limit_w"]),
                _w(r["enforced_limit_w"]),
                _w(r["default_limit_w"]),
                f"{_w(r['min_limit_w'])}-{_w(r['max_limit_w'])}",
            ]
            for r in rows
        ],
    )


def _report(verb: str, rows: list[dict[str, Any]], as_json: bool, dry_run: bool) -> None:
    if as_json:
        echo_json({"dry_run": dry_run, "gpus": rows})
        return
    for r in rows:
        if dry_run:
            what = "would change" if r["changes"] else "already at"
            click.echo(
                f"GPU {r['index']} ({r['uuid']}): {what} {r['from_w']:g} W -> {r['to_w']:g} W (allowed {r['min_w']:g}-{r['max_w']:g} W)"
            )
        else:
            click.echo(f"GPU {r['index']} ({r['uuid']}): {verb} {r['from_w']:g} W -> {r['enforced_w']:g} W (read back)")
    if dry_run:
        click.echo("dry run: nothing was changed")


@power.command("set")
@click.argument("watts", type=float)
@gpu_option
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--persist", is_flag=True, help="Also install a systemd unit that re-applies the limits at boot.")
@click.option("--print", "print_only", is_flag=True, help="With --persist: print the unit, install nothing.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the unit goes (default /etc/systemd/system).",
)
@state_option
@json_option
def set_(
    watts: float,
    gpu_refs: tuple[str, ...],
    dry_run: bool,
    persist: bool,
    print_only: bool,
    unit_dir: Path | None,
    state_file: Path | None,
    as_json: bool,
) -> None:
    """Cap GPUs at WATTS: checked against each board's range, then read back.

    \b
    Example:
      sudo deployctl power set 300 --gpu 0 --gpu 1 --persist
    """
    from deployctl.errors import InputError
    from deployctl.hardware import persist as persist_mod
    from deployctl.hardware import power as pw

    if print_only and not persist:
        raise InputError("--print goes with --persist")
    with _session() as nvml:
        changes = pw.plan_set(pw.select(nvml.gpus(), gpu_refs), watts)
        if persist and print_only:
            click.echo(
                persist_mod.render_unit([persist_mod.UnitLimit(c.uuid, round(c.to_w)) for c in changes]), nl=False
            )
            return
        if dry_run:
            _report("set", pw.as_rows(changes), as_json, dry_run=True)
            return
        applied = pw.apply(nvml, changes, state_file or pw.state_path())
    _report("set", pw.as_rows(applied), as_json, dry_run=False)
    if persist:
        unit = persist_mod.render_unit([persist_mod.UnitLimit(c.uuid, round(c.to_w)) for c in changes])
        path = persist_mod.install(unit, unit_dir or persist_mod.UNIT_DIR)
        if not as_json:
            click.echo(f"installed and enabled {path}: limits are re-applied at boot")


set_.name = "set"


@power.command("reset")
@gpu_option
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@state_option
@json_option
def reset(gpu_refs: tuple[str, ...], dry_run: bool, state_file: Path | None, as_json: bool) -> None:
    """Restore the limits found before deployctl's first change (else the boards' defaults).

    \b
    Example:
      sudo deployctl power reset
    """
    from deployctl.hardware import power as pw

    state = state_file or pw.state_path()
    with _session() as nvml:
        changes = pw.plan_reset(pw.select(nvml.gpus(), gpu_refs), state)
        if dry_run:
            _report("reset", pw.as_rows(changes), as_json, dry_run=True)
            return
        applied = pw.reset(nvml, changes, state)
    _report("reset", pw.as_rows(applied), as_json, dry_run=False)


@click.command()
@click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Spec file (its port, paths and power policy).",
)
@json_option
def doctor(spec_path: Path | None, as_json: bool) -> None:
    """Check the host: driver, GPUs, P2P, persistence, power, Docker, Compose, toolkit, disk, /dev/shm, port.

    Exits 0 when no check FAILs, 1 otherwise.

    \b
    Example:
      deployctl doctor --json | jq '.checks[] | select(.status != "OK")'
    """
    from deployctl.ops.doctor import doctor as run_checks

    checks = run_checks(spec_path)
    failed = any(c.status == "FAIL" for c in checks)
    if as_json:
        echo_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        colours = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
        console = output.console()
        for c in checks:
            hint = f"  -> {c.hint}" if c.hint and c.status != "OK" else ""
            console.print(f"[{colours[c.status]}]{c.status:4}[/] {c.name:26} {c.detail}{hint}", soft_wrap=True)
    if failed:
        raise click.exceptions.Exit(1)
