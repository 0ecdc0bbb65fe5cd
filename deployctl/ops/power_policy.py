"""Power workflows: the spec's power policy applied by `up` before the engine starts."""

from __future__ import annotations

import os

from deployctl.errors import EnvironmentProblem
from deployctl.spec import DeploymentSpec


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
    from deployctl.hardware import inventory, nvml, power

    with nvml.session(inventory.NVML_LIB) as session:
        applied = power.apply_policy(session, watts, power.state_path())
    gpus = ", ".join(str(a.change.index) for a in applied)
    return f"GPU {gpus} capped at {watts} W (read back)"
