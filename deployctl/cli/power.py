"""`deployctl gpus`, `power show|set|reset`, `doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl import load_options as opt
from deployctl.cli import output
from deployctl.cli.options import bounded_option, folder_option, json_option, token_options
from deployctl.cli.output import echo_json

gpu_option = click.option(
    "--gpu", "gpu_refs", multiple=True, metavar="ID", help="A GPU index or UUID (repeatable; default: all)."
)
state_option = click.option(
    "--state-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where the original limits are kept (default /var/lib/deployctl/power-state.json).",
)


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
    from deployctl.ops import power_policy

    host = power_policy.host()
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
    output.table(title, ["#", "name", "uuid", "pci", "cc", "memory", "draw", "limit (range)", "temp", "persist"], rows)


@click.group()
def power() -> None:
    """Show, set, reset and persist GPU power limits (set/reset need root).

    \b
    Examples:
      deployctl power show
      sudo deployctl power set 300 --dry-run
      sudo deployctl power set 300 --persist
      sudo deployctl power reset
      sudo deployctl power tune --dry-run
    """


@power.command("show")
@json_option
def show(as_json: bool) -> None:
    """Show each GPU's power draw, limits and allowed range.

    \b
    Example:
      deployctl power show --json
    """
    from deployctl.ops import power_policy

    columns = {"index": "#", "name": "name", "draw_w": "draw", "limit_w": "limit", "enforced_limit_w": "enforced"}
    output.rows(
        power_policy.limits(),
        {**columns, "default_limit_w": "default", "min_limit_w": "allowed"},
        as_json=as_json,
        key="gpus",
        title="power",
        text=lambda r: [
            str(r["index"]),
            r["name"],
            _w(r["draw_w"]),
            _w(r["limit_w"]),
            _w(r["enforced_limit_w"]),
            _w(r["default_limit_w"]),
            f"{_w(r['min_limit_w'])}-{_w(r['max_limit_w'])}",
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
@folder_option("--unit-dir", help="Where the unit goes (default /etc/systemd/system).")
@state_option
@json_option
def set_(watts: float, as_json: bool, **flags: Any) -> None:
    """Cap GPUs at WATTS: checked against each board's range, then read back.

    \b
    Example:
      sudo deployctl power set 300 --gpu 0 --gpu 1 --persist
    """
    from deployctl.ops import power_policy

    # Click names each flag as set_limits names its parameter: they pass through as they are.
    done = power_policy.set_limits(watts, **flags)
    if done.unit is not None:
        click.echo(done.unit, nl=False)
        return
    _report("set", done.rows, as_json, dry_run=done.dry_run)
    if done.unit_path is not None and not as_json:
        click.echo(f"installed and enabled {done.unit_path}: limits are re-applied at boot")


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
    from deployctl.ops import power_policy

    done = power_policy.reset_limits(gpu_refs=gpu_refs, dry_run=dry_run, state_file=state_file)
    _report("reset", done.rows, as_json, dry_run=done.dry_run)


@power.command("tune")
@folder_option("--stack-dir", help="The stack whose GPUs and endpoint to tune (default: stack_dir of the spec).")
@click.option("--endpoint", help="URL (default: the stack's endpoint).")
@click.option("--simulate", is_flag=True, help="Rehearse: the simulator's power model stands in for the GPUs.")
@click.option(
    "--preset",
    type=click.Choice(["sustained", "ttft"]),
    help="The bench preset's prompt/output lengths at its highest concurrency.",
)
@bounded_option(
    "--concurrency", bounds=opt.CONCURRENCY, help="Closed loop at this many requests in flight (default 8)."
)
@bounded_option("--rate", bounds=opt.RATE, help="Open loop (Poisson arrivals) at this many requests per second.")
@token_options(opt.TOKENS, output_default=128)
@click.option("--caps", help="Caps to measure in watts, e.g. 450,350,300 (default: board default down to minimum).")
@bounded_option("--step", bounds=opt.STEP_W, default=50.0, help="Watts between caps (1-1000).")
@bounded_option("--settle", bounds=opt.SETTLE_S, default=5.0, help="Seconds to wait after each change (0-3600).")
@bounded_option("--window", bounds=opt.WINDOW_S, default=20.0, help="Seconds of load measured per cap (up to 3600).")
@bounded_option(
    "--min-throughput",
    bounds=opt.FRACTION,
    default=0.95,
    help="Keep at least this fraction of the fastest window's tokens/s (normally the first, highest cap's).",
)
@bounded_option("--slo-ttft", bounds=opt.SLO_MS, help="SLO: time to first token p90, ms.")
@bounded_option("--slo-itl", bounds=opt.SLO_MS, help="SLO: inter-token latency p90, ms.")
@click.option("--apply", is_flag=True, help="Leave the chosen cap set (default: put the original caps back).")
@click.option("--persist", is_flag=True, help="With --apply: also install the systemd unit that sets it at boot.")
@folder_option("--unit-dir", help="With --persist: where the systemd unit goes (default /etc/systemd/system).")
@click.option("--api-key-env", help="Variable holding the API key (default: the stack's .env).")
@folder_option("-o", "--output-dir", default=Path("power-tune"))
@gpu_option
@state_option
@click.option("--dry-run", is_flag=True, help="Print the sweep and how long it takes; change nothing.")
@json_option
def tune(as_json: bool, **flags: Any) -> None:
    """Find the lowest power cap that keeps the model's throughput: step the cap down under a fixed load.

    Each cap is set on every GPU of the stack, read back, left to settle, then measured for
    --window seconds: tokens/s, TTFT and ITL, average power from the energy counter, J/token,
    peak temperature and clocks. The original caps go back afterwards (on errors, Ctrl-C and
    SIGTERM too) unless --apply. Exits 1 when no cap meets the rule.

    \b
    Examples:
      sudo deployctl power tune --dry-run
      sudo deployctl power tune --concurrency 8 --slo-itl 50 --apply --persist
      deployctl power tune --simulate --caps 450,350,250 --settle 1 --window 3   # a stack started with --sim-fault power-model=rtx4090
    """
    from deployctl.ops import power_tune

    # Click names each flag as power_tune.tune names its parameter: they pass through as they are.
    result = power_tune.tune(
        **flags,
        report=(lambda line: None) if as_json else (lambda line: click.echo(line, err=True)),
    )
    if as_json:
        echo_json(result.as_dict())
    else:
        _tune_report(result)
    if not result.dry_run and result.chosen_w is None:
        raise click.exceptions.Exit(1)


def _tune_report(result: Any) -> None:
    tag = "simulated: " if result.simulated else ""
    gpus = ", ".join(f"{g.index} ({g.limit_w:g} W now, {g.min_w:g}-{g.max_w:g} W)" for g in result.gpus)
    if result.dry_run:
        click.echo(f"{tag}would tune GPU {gpus}")
        click.echo(f"{tag}caps, highest first: {', '.join(f'{c:g} W' for c in result.caps)}")
        load = result.load
        what = "concurrency" if load.mode == "closed" else "rate/s"
        click.echo(f"{tag}load: {what} {load.value:g}, {load.prompt_tokens} in / {load.output_tokens} out tokens")
        click.echo(f"{tag}takes at most about {result.estimated_s / 60:.1f} min; dry run: nothing was changed")
        return
    title = "power tune: the simulator's power model, not a card's figures" if result.simulated else "power tune"
    columns = ["cap", "tok/s", "vs fastest", "TTFT p50", "TTFT p90", "ITL p50", "ITL p90", "power", "J/token"]
    columns += ["peak °C", "SM MHz", "mem MHz", "verdict"]

    def n(v: float | None, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    rows = []
    for r in result.rows:
        verdict = "chosen" if r.cap_w == result.chosen_w else "ok" if r.qualifies else "falls short"
        if r.meets_slo is False:
            verdict = "misses SLO"
        rows.append(
            [
                f"{r.cap_w:g} W",
                n(r.tokens_per_s),
                f"{r.throughput_ratio:.1%}",
                n(r.ttft_ms_p50),
                n(r.ttft_ms_p90),
                n(r.itl_ms_p50),
                n(r.itl_ms_p90),
                f"{r.power_w:g} W",
                n(r.joules_per_token, ".3f"),
                n(r.peak_temperature_c, ".0f"),
                n(r.sm_clock_mhz, ".0f"),
                n(r.mem_clock_mhz, ".0f"),
                verdict,
            ]
        )
    # Plain fixed-width lines, not a rich table: every line must carry the "simulated" tag whole.
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    click.echo(tag + title)
    for line in [columns, *rows]:
        click.echo(tag + "  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)))
    if result.stopped_early:
        click.echo(f"{tag}stopped early: two caps in a row fell short")
    if result.chosen_w is None:
        click.echo(f"{tag}no cap kept {result.min_throughput:.0%} of the fastest throughput within the SLO")
    else:
        first, chosen = result.rows[0], next(r for r in result.rows if r.cap_w == result.chosen_w)
        saved = max(0.0, 1 - chosen.power_w / first.power_w) if first.power_w else 0.0
        click.echo(
            f"{tag}lowest cap that holds: {result.chosen_w:g} W per GPU: {chosen.throughput_ratio:.1%} of the "
            f"fastest throughput, {saved:.0%} less power than at {first.cap_w:g} W"
        )
    if result.applied:
        click.echo(f"{tag}left at {result.chosen_w:g} W (--apply); `deployctl power reset` goes back")
    elif result.restored:
        click.echo(f"{tag}original caps restored: " + ", ".join(f"GPU {g.index} {g.limit_w:g} W" for g in result.gpus))
    if result.unit_path:
        click.echo(f"installed and enabled {result.unit_path}: the cap is set again at boot")
    click.echo("wrote " + ", ".join(result.files.values()))


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
    import deployctl.ops.doctor

    checks = deployctl.ops.doctor.doctor(spec_path)
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
