"""GPU power limits: show, set (checked, read back), reset to what was there, and persist at boot."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from deployctl import fsio
from deployctl.errors import DeployctlError, InputError
from deployctl.gpus.gpu import Gpu, Reading
from deployctl.hardware.nvml import NoPermission, NotSupported, Nvml

DEFAULT_STATE = Path("/var/lib/deployctl/power-state.json")
TOLERANCE_W = 1.0  # NVML rounds to the board's step; anything further off did not take


def state_path() -> Path:
    """Give where the limits found before the first change are kept (DEPLOYCTL_STATE_DIR overrides)."""
    base = os.environ.get("DEPLOYCTL_STATE_DIR")
    return Path(base) / "power-state.json" if base else DEFAULT_STATE


class PowerError(DeployctlError):
    """A limit did not take, or could not be set."""


@dataclass(frozen=True)
class Change:
    index: int
    uuid: str
    name: str
    from_w: float
    to_w: float
    min_w: float
    max_w: float

    @property
    def changes_anything(self) -> bool:
        return abs(self.from_w - self.to_w) >= TOLERANCE_W


@dataclass(frozen=True)
class Applied:
    change: Change
    enforced_w: float


def select(gpus: list[Gpu], refs: tuple[str, ...]) -> list[Gpu]:
    """Give the GPUs named by index or UUID (all of them when none are named)."""
    if not refs:
        return gpus
    chosen = []
    for ref in refs:
        match = [g for g in gpus if ref == g.uuid or (ref.isdigit() and int(ref) == g.index)]
        if not match:
            raise InputError(
                f"--gpu {ref}: no such GPU", f"GPUs here: {', '.join(f'{g.index} ({g.uuid})' for g in gpus) or 'none'}"
            )
        chosen += [g for g in match if g not in chosen]
    return chosen


def plan_set(gpus: list[Gpu], watts: float) -> list[Change]:
    """Give the change for each GPU, or an InputError naming the allowed range (nothing is changed)."""
    if not gpus:
        raise InputError("no GPUs to set", "run `deployctl gpus`")
    changes = []
    for g in gpus:
        p = g.power
        if p.min_limit_w is None or p.max_limit_w is None or p.enforced_limit_w is None:
            raise PowerError(
                f"GPU {g.index} ({g.name}) does not report its power limits", "this board cannot be capped"
            )
        if not p.min_limit_w <= watts <= p.max_limit_w:
            raise InputError(
                f"{watts:g} W is outside GPU {g.index}'s allowed range of {p.min_limit_w:g}-{p.max_limit_w:g} W",
                f"choose a limit between {p.min_limit_w:g} and {p.max_limit_w:g} W",
            )
        changes.append(Change(g.index, g.uuid, g.name, p.enforced_limit_w, watts, p.min_limit_w, p.max_limit_w))
    return changes


# -- the state file ---------------------------------------------------------------------------------
def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """Give the recorded limits, keyed by GPU UUID."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PowerError(f"{path}: unreadable power state: {exc}", f"remove {path} to start afresh") from None
    gpus = data.get("gpus", {}) if isinstance(data, dict) else {}
    return gpus if isinstance(gpus, dict) else {}


def write_state(path: Path, gpus: dict[str, dict[str, Any]]) -> None:
    """Write the state whole or not at all (fsio.write_atomic: no link followed, fsynced, renamed)."""
    hint = "run as root, or set DEPLOYCTL_STATE_DIR"
    text = json.dumps({"version": 1, "gpus": gpus}, indent=2, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsio.write_atomic(path, text.encode(), mode=0o600)
    except OSError as exc:
        raise PowerError(f"cannot write the power state {path}: {exc.strerror}", hint) from None
    except DeployctlError as exc:
        raise PowerError(f"cannot write the power state: {exc.message}", hint) from None


# -- setting ------------------------------------------------------------------------------------------
def _set_and_verify(nvml: Nvml, index: int, watts: float) -> float:
    nvml.set_power_limit(index, watts)
    enforced = nvml.power(index).enforced_limit_w
    if enforced is None or abs(enforced - watts) >= TOLERANCE_W:
        raise PowerError(
            f"GPU {index}: asked for {watts:g} W but the board enforces {enforced if enforced is None else f'{enforced:g}'} W: the limit did not take",
            "check `nvidia-smi -q -d POWER`; another tool (or a driver policy) may hold the limit",
        )
    return enforced


def apply(nvml: Nvml, changes: list[Change], state: Path) -> list[Applied]:
    """Set each limit and read it back; record the limits found before the first change.

    If one GPU fails, the GPUs already changed in this call go back to where they were.
    """
    recorded = read_state(state)
    fresh = {
        c.uuid: {"index": c.index, "name": c.name, "original_w": c.from_w} for c in changes if c.uuid not in recorded
    }
    if fresh:
        write_state(state, {**recorded, **fresh})
    done: list[Applied] = []
    try:
        for c in changes:
            index = nvml.index_of(c.uuid)  # NVML order can change; the UUID cannot
            done.append(Applied(c, _set_and_verify(nvml, index, c.to_w)))
    except DeployctlError:
        for a in reversed(done):
            with contextlib.suppress(DeployctlError):
                nvml.set_power_limit(nvml.index_of(a.change.uuid), a.change.from_w)
        raise
    return done


def plan_reset(gpus: list[Gpu], state: Path) -> list[Change]:
    """Give the changes that restore each GPU's recorded limit (its default limit when none was recorded)."""
    recorded = read_state(state)
    changes = []
    for g in gpus:
        p = g.power
        target = recorded.get(g.uuid, {}).get("original_w", p.default_limit_w)
        if target is None or p.enforced_limit_w is None:
            raise PowerError(f"GPU {g.index} ({g.name}) does not report its power limits")
        changes.append(
            Change(g.index, g.uuid, g.name, p.enforced_limit_w, float(target), p.min_limit_w or 0, p.max_limit_w or 0)
        )
    return changes


def reset(nvml: Nvml, changes: list[Change], state: Path) -> list[Applied]:
    """Restore the limits and forget the recorded ones."""
    done = [Applied(c, _set_and_verify(nvml, nvml.index_of(c.uuid), c.to_w)) for c in changes]
    recorded = read_state(state)
    left = {uuid: v for uuid, v in recorded.items() if uuid not in {c.uuid for c in changes}}
    if left != recorded:
        write_state(state, left)
    return done


def as_rows(items: list[Change] | list[Applied]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        if isinstance(item, Applied):
            rows.append({**asdict(item.change), "enforced_w": item.enforced_w})
        else:
            rows.append({**asdict(item), "changes": item.changes_anything})
    return rows


def apply_policy(nvml: Nvml, watts: int, state: Path) -> list[Applied]:
    """Apply the spec's power.limit_watts to every GPU (what `deployctl up` does first)."""
    changes = plan_set(nvml.gpus(), watts)
    return apply(nvml, [c for c in changes if c.changes_anything], state) + [
        Applied(c, c.from_w) for c in changes if not c.changes_anything
    ]


# -- power tune: the GPUs whose caps a sweep moves ------------------------------------------------------
@dataclass(frozen=True)
class GpuPower:
    """One GPU a sweep caps: its NVML constraints and the limit it enforces now, in watts."""

    index: int
    uuid: str
    name: str
    min_w: float
    max_w: float
    default_w: float
    limit_w: float


class PowerControl(Protocol):
    """Set, read and restore the caps of the GPUs under test (NVML's, or the simulator's)."""

    simulated: bool

    def gpus(self) -> list[GpuPower]: ...

    def check(self) -> None:
        """Raise, before anything changes, when the caps cannot be set or the energy cannot be read."""

    def set_limit(self, watts: float) -> None:
        """Cap every GPU at `watts` and read it back."""

    def readings(self) -> list[Reading]: ...

    def restore(self) -> list[str]:
        """Put back the limits found at the start, GPU by GPU whatever fails; give what could not be restored."""

    def keep(self) -> None:
        """Leave the current caps in place (`power tune --apply`)."""


class NvmlControl:
    """The GPUs named by UUID (all when none are), capped through NVML; originals recorded in the state file."""

    simulated = False

    def __init__(self, nvml: Nvml, uuids: list[str], state: Path, *, euid: Callable[[], int] | None = None) -> None:
        self.nvml = nvml
        self.state = state
        self._euid = euid or (lambda: os.geteuid())  # looked up at check time
        found = nvml.gpus()
        self._gpus = [g for g in found if g.uuid in uuids] if uuids else found
        missing = set(uuids) - {g.uuid for g in self._gpus}
        if missing:
            raise InputError(
                f"the stack's GPU {', '.join(sorted(missing))} is not on this host", "run `deployctl gpus`"
            )
        self._recorded_before = set(read_state(state))
        self._originals = {g.uuid: (g.index, g.power.enforced_limit_w) for g in self._gpus}

    def gpus(self) -> list[GpuPower]:
        out = []
        for g in self._gpus:
            p = g.power
            if None in (p.min_limit_w, p.max_limit_w, p.default_limit_w, p.enforced_limit_w):
                raise NotSupported(
                    f"GPU {g.index} ({g.name}) does not report its power limits", "this board cannot be capped"
                )
            out.append(
                GpuPower(
                    g.index,
                    g.uuid,
                    g.name,
                    p.min_limit_w or 0,
                    p.max_limit_w or 0,
                    p.default_limit_w or 0,
                    p.enforced_limit_w or 0,
                )
            )
        return out

    def check(self) -> None:
        if self._euid() != 0:
            raise NoPermission(
                "power tune sets GPU power limits: permission denied",
                "run as root (sudo deployctl power tune ...), or rehearse with --simulate",
            )
        for g in self.gpus():
            try:
                self.nvml.energy_mj(g.index)
            except NotSupported:
                raise NotSupported(
                    f"GPU {g.index} ({g.name}) has no energy counter (NVML's total energy consumption)",
                    "power tune needs a Volta or newer board",
                ) from None
        for gpu in self._gpus:
            # Writing the limit it already has changes nothing, and meets NoPermission or NotSupported now.
            # The requested limit, not the enforced one: a driver policy may enforce less than was asked.
            asked = gpu.power.limit_w or gpu.power.enforced_limit_w
            if asked is not None:
                self.nvml.set_power_limit(gpu.index, asked)

    def set_limit(self, watts: float) -> None:
        current = [self.nvml.gpu(index) for index, _ in self._originals.values()]
        apply(self.nvml, plan_set(current, watts), self.state)

    def readings(self) -> list[Reading]:
        return [self.nvml.reading(index) for index, _ in self._originals.values()]

    def restore(self) -> list[str]:
        problems = []
        for uuid, (index, watts) in self._originals.items():
            if watts is None:
                continue
            try:
                _set_and_verify(self.nvml, index, watts)
            except DeployctlError as exc:
                problems.append(f"GPU {index} ({uuid}): not restored to {watts:g} W: {exc.message}")
        if not problems:
            # Forget what this run recorded; limits recorded before it stay for `power reset`.
            recorded = read_state(self.state)
            left = {u: v for u, v in recorded.items() if u in self._recorded_before or u not in self._originals}
            if left != recorded:
                write_state(self.state, left)
        return problems

    def keep(self) -> None:
        """The state file keeps the limits found before, so `deployctl power reset` can still go back."""
