"""GPU power workflows through NVML: what `gpus` and `power show|set|reset` read and change, and the spec's
power policy that `up` applies before the engine starts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.gpus.gpu import Host
from deployctl.spec import DeploymentSpec

if TYPE_CHECKING:
    from deployctl.hardware.nvml import Nvml
    from deployctl.hardware.power import Change


def apply_policy(spec: DeploymentSpec, simulate: bool, skip: bool) -> str | None:
    """Apply power.limit_watts before the engine starts; give what was done, for the report."""
    watts = spec.power.limit_watts
    if not watts:
        return None
    if simulate:
        return f"power.limit_watts {watts} W not applied: the engine is simulated"
    if skip:
        return f"power.limit_watts {watts} W skipped (--skip-power)"
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"power.limit_watts is {watts} W and setting GPU power limits needs root",
            "run `sudo deployctl up`, or pass --skip-power to start without capping",
        )
    from deployctl.hardware import power

    with _session() as session:
        applied = power.apply_policy(session, watts, power.state_path())
    gpus = ", ".join(str(a.change.index) for a in applied)
    return f"GPU {gpus} capped at {watts} W (read back)"


@contextmanager
def _session() -> Iterator[Nvml]:
    from deployctl.hardware import inventory, nvml

    with nvml.session(inventory.NVML_LIB) as session:
        yield session


def host() -> Host:
    """Give this machine's GPUs as NVML reports them: memory, power, temperature, P2P."""
    with _session() as nvml:
        return nvml.host()


def limits() -> list[dict[str, Any]]:
    """Give one row per GPU: index, uuid, name, draw and every power limit NVML reports (watts)."""
    with _session() as nvml:
        found = nvml.gpus()
    return [{"index": g.index, "uuid": g.uuid, "name": g.name, **g.power.model_dump()} for g in found]


@dataclass(frozen=True)
class LimitChange:
    """What `power set` or `power reset` did (with dry_run: would do), one row per GPU, and the boot unit."""

    rows: list[dict[str, Any]]
    dry_run: bool
    unit: str | None = None  # --persist --print: the systemd unit's text, installed nowhere
    unit_path: Path | None = None  # --persist: where the unit was installed and enabled


def set_limits(
    watts: float,
    *,
    gpu_refs: tuple[str, ...],
    dry_run: bool,
    persist: bool,
    print_only: bool,
    unit_dir: Path | None,
    state_file: Path | None,
) -> LimitChange:
    """Give what capping the GPUs of `gpu_refs` (all: empty) at `watts` changed, each limit read back.

    With `persist`, also install the systemd unit that sets them at boot (`print_only`: only give its text).
    """
    from deployctl.hardware import persist as boot
    from deployctl.hardware import power

    if print_only and not persist:
        raise InputError("--print goes with --persist")
    with _session() as nvml:
        changes = power.plan_set(power.select(nvml.gpus(), gpu_refs), watts)
        if persist and print_only:
            return LimitChange([], dry_run=False, unit=_unit(changes))
        if dry_run:
            return LimitChange(power.as_rows(changes), dry_run=True)
        applied = power.apply(nvml, changes, state_file or power.state_path())
    rows = power.as_rows(applied)
    if not persist:
        return LimitChange(rows, dry_run=False)
    try:
        path = boot.install(_unit(changes), unit_dir or boot.UNIT_DIR)
    except DeployctlError as exc:
        # The limits are set already: say so in the one error line (and the one JSON document).
        done = ", ".join(f"GPU {r['index']} {r['enforced_w']:g} W" for r in rows)
        raise type(exc)(f"{exc.message} (the limits are set and read back: {done})", exc.hint) from None
    return LimitChange(rows, dry_run=False, unit_path=path)


def _unit(changes: list[Change]) -> str:
    from deployctl.hardware import persist as boot

    return boot.render_unit([boot.UnitLimit(c.uuid, round(c.to_w)) for c in changes])


def reset_limits(*, gpu_refs: tuple[str, ...], dry_run: bool, state_file: Path | None) -> LimitChange:
    """Give what restoring the limits found before deployctl's first change (else the defaults) changed."""
    from deployctl.hardware import power

    state = state_file or power.state_path()
    with _session() as nvml:
        changes = power.plan_reset(power.select(nvml.gpus(), gpu_refs), state)
        if dry_run:
            return LimitChange(power.as_rows(changes), dry_run=True)
        applied = power.reset(nvml, changes, state)
    return LimitChange(power.as_rows(applied), dry_run=False)
