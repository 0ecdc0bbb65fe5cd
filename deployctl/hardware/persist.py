"""`power set --persist`: a systemd oneshot unit that enables persistence mode and re-applies limits by UUID."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from deployctl import __version__, fsio, templating, tools
from deployctl.errors import DeployctlError, EnvironmentProblem

UNIT_NAME = "deployctl-power.service"
UNIT_DIR = Path("/etc/systemd/system")
SYSTEMCTL_TIMEOUT_S = 120  # daemon-reload waits on every unit file; a hung systemd must not hang `power set`


@dataclass(frozen=True)
class UnitLimit:
    uuid: str
    watts: int


def render_unit(limits: list[UnitLimit], nvidia_smi: str = "/usr/bin/nvidia-smi") -> str:
    """Give the unit file's text; the same limits always give the same bytes."""
    ordered = sorted(limits, key=lambda g: g.uuid)
    summary = (
        ", ".join(sorted({f"{g.watts} W" for g in ordered}))
        + f" on {len(ordered)} GPU{'s' if len(ordered) != 1 else ''}"
    )
    return templating.render(
        "systemd/deployctl-power.service.j2", version=__version__, gpus=ordered, nvidia_smi=nvidia_smi, summary=summary
    )


def install(text: str, unit_dir: Path = UNIT_DIR) -> Path:
    """Write the unit (atomically), reload systemd and enable it; give its path."""
    systemctl = os.environ.get("DEPLOYCTL_SYSTEMCTL") or shutil.which("systemctl")
    if not systemctl:
        raise EnvironmentProblem(
            "systemctl not found: this host does not run systemd", "use --persist --print and install the unit by hand"
        )
    path = unit_dir / UNIT_NAME
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        fsio.write_atomic(path, text.encode())
    except OSError as exc:
        raise DeployctlError(f"cannot write {path}: {exc.strerror}", "run as root") from None
    except DeployctlError as exc:
        raise DeployctlError(exc.message, "run as root") from None
    for args in (["daemon-reload"], ["enable", UNIT_NAME]):
        try:
            tools.run([systemctl, *args], timeout=SYSTEMCTL_TIMEOUT_S)
        except tools.ToolError as exc:
            said = exc.stderr or exc.stdout.strip() or exc.message
            raise DeployctlError(f"systemctl {' '.join(args)} failed: {said}") from None
    return path
