"""What every target shares: the one render context built from a plan, and the `Target` interface.

A target (Compose on one host, Helm on a cluster) renders files from a `RenderContext` and brings them
up, reads their status and takes them down through its transport (docker/ or kube/). Every caller
that renders (`render`, `up`, `bundle create`, `k8s up`) goes through `targets.render`, which builds
the context once: the engine-neutral Workload (targets/workload.py) plus the plan it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from deployctl.engines.simulator import SIM_IMAGE
from deployctl.plan import Plan
from deployctl.targets import workload
from deployctl.targets.workload import Workload

if TYPE_CHECKING:
    from deployctl.spec import Monitoring

# Stands in for the API key where a render does not hold it (a chart: a Kubernetes Secret holds it,
# from apiKey.existingSecret or apiKey.value); a target that writes the key refuses to render it.
KEY_NOT_RENDERED = "<not rendered: stored apart from the files>"


@dataclass(frozen=True)
class RenderOptions:
    """How to render a plan: what the caller decides, not the plan (the same plan renders many ways)."""

    simulate: bool = False
    api_key: str | None = None  # the key the Compose target writes to .env; None where it is not rendered
    sim_image: str = SIM_IMAGE
    faults: dict[str, str] = field(default_factory=dict)  # simulator failure rehearsals (--sim-fault)
    labels: dict[str, str] = field(default_factory=dict)  # on the container as they are (ownership)
    replicas: int = 1  # Helm: engine instances, each on its own GPUs
    runtime_class: str = "nvidia"  # Helm: the pods' RuntimeClass ("" for the cluster's default)
    # The spec's `monitoring:` block: Compose renders its `monitoring` profile when it is enabled; Helm's
    # chart always carries the rules and dashboards (off in values.yaml), with its SLOs where given.
    monitoring: Monitoring | None = None


@dataclass(frozen=True)
class RenderContext:
    """Everything a target renders from, built once (`context`): the plan, its Workload, the options."""

    plan: Plan
    workload: Workload
    options: RenderOptions

    @property
    def key_rendered(self) -> bool:
        """Give whether the API key itself is at hand to be written (only Compose's .env writes it)."""
        return self.plan.api_key and bool(self.options.api_key)


def context(plan: Plan, options: RenderOptions) -> RenderContext:
    """Give the one render context of `plan`: every target's files come from it."""
    key = options.api_key or (KEY_NOT_RENDERED if plan.api_key else None)
    w = workload.from_plan(
        plan, simulate=options.simulate, api_key=key, sim_image=options.sim_image, faults=options.faults
    )
    return RenderContext(plan, w, options)


Place = TypeVar("Place", contravariant=True)
State = TypeVar("State", covariant=True)


class Target(Protocol[Place, State]):
    """Where a plan runs: its files rendered from the one context; then up, status and down at a place
    (a stack directory's compose project, a Helm release on a cluster) through the target's transport."""

    name: str

    def render(self, context: RenderContext) -> dict[str, bytes]:
        """Give the target's files, byte for byte; the same context always gives the same bytes."""
        ...

    def up(self, place: Place) -> None:
        """Start (or upgrade to) what is rendered at `place`."""
        ...

    def status(self, place: Place) -> State:
        """Give what runs at `place`, in the target's words."""
        ...

    def down(self, place: Place) -> list[str]:
        """Stop and remove what runs at `place`; give what is left (nothing, when all went)."""
        ...
