"""From a spec to a plan and its rendered files: the steps `init`, `plan`, `render`, `up` and `k8s up` share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deployctl import fsio, models, planner
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.hardware import inventory
from deployctl.models import ModelFacts
from deployctl.plan import Plan
from deployctl.planner.compare import Comparison
from deployctl.spec import DeploymentSpec
from deployctl.terminal import shown

if TYPE_CHECKING:
    from deployctl.targets import RenderOptions

SIMULATED_GPU = "rtx4090"


def model_facts(spec: DeploymentSpec) -> ModelFacts:
    """Give the facts of the spec's model: its directory, or its catalog preset."""
    if spec.model.path is not None:
        return models.inspect(spec.model.path)
    assert spec.model.preset is not None
    return models.preset(spec.model.preset)


def make_plan(spec: DeploymentSpec, simulate: bool = False) -> Plan:
    """Give the plan for a spec on its GPUs (a simulated run with no driver plans for an RTX 4090)."""
    facts = model_facts(spec)
    host = inventory.host_for(spec.gpu_model, spec.gpu_count, SIMULATED_GPU if simulate else None)
    return planner.plan(spec, facts, host, simulate=simulate)


def cluster_plan(spec: DeploymentSpec, *, simulate: bool) -> Plan:
    """Give the plan per replica on a cluster, from a GPU profile (the nodes are not here to be asked)."""
    if not simulate and spec.gpu_model is None:
        raise InputError(
            "a plan for a cluster needs the nodes' GPU model",
            "pass --gpu-model (e.g. rtx4090); each replica gets --gpus of them",
        )
    return make_plan(spec, simulate=simulate)


def stack_options(
    spec: DeploymentSpec,
    stack_dir: Path,
    *,
    simulate: bool,
    faults: dict[str, str] | None = None,
    spec_path: Path | None = None,
) -> RenderOptions:
    """Give how a stack directory is rendered: the spec's API key, and labels naming the directory that owns it."""
    from deployctl.ops import owner
    from deployctl.targets import RenderOptions

    return RenderOptions(
        simulate=simulate,
        api_key=spec.resolve_api_key(),
        faults=dict(faults or {}),
        labels=owner.labels(stack_dir.absolute(), spec_path),
        monitoring=spec.monitoring,
    )


def chart_options(
    spec: DeploymentSpec,
    *,
    simulate: bool,
    faults: dict[str, str] | None = None,
    replicas: int = 1,
    runtime_class: str = "nvidia",
) -> RenderOptions:
    """Give how a chart is rendered: never with the API key (a Kubernetes Secret holds it); the spec's SLOs."""
    from deployctl.targets import RenderOptions

    return RenderOptions(
        simulate=simulate,
        faults=dict(faults or {}),
        replicas=replicas,
        runtime_class=runtime_class,
        monitoring=spec.monitoring,
    )


def render_stack(
    spec: DeploymentSpec,
    plan: Plan,
    simulate: bool = False,
    stack_dir: Path | None = None,
    faults: dict[str, str] | None = None,
    spec_path: Path | None = None,
) -> Path:
    """Render the plan into the spec's stack directory (keeping the operator's files there) and give its path."""
    from deployctl import stackdir, targets

    target = (stack_dir or spec.stack_dir).absolute()
    options = stack_options(spec, target, simulate=simulate, faults=faults, spec_path=spec_path)
    files = targets.render(plan, "compose", options)
    revision = stackdir.next_revision(stackdir.rendered_files(target), files, target)
    return stackdir.write_stack(files, target, revision=revision, spec=spec_path)


@dataclass(frozen=True)
class Rendered:
    """What `render` wrote: the stack or chart directory, and the plan it holds."""

    target: str
    path: Path
    plan_hash: str
    simulate: bool
    replicas: int


def render(
    spec: DeploymentSpec,
    *,
    target: str,
    output: Path | None = None,
    simulate: bool = False,
    faults: dict[str, str] | None = None,
    replicas: int = 1,
    spec_path: Path | None = None,
) -> Rendered:
    """Plan the spec and write it for `target`: a stack directory (compose) or a chart directory (helm)."""
    if target == "helm":
        from deployctl import targets
        from deployctl.targets.helm import write_chart

        plan = cluster_plan(spec, simulate=simulate)
        files = targets.render(plan, "helm", chart_options(spec, simulate=simulate, faults=faults, replicas=replicas))
        out = write_chart(files, output or Path(f"{spec.name}-chart"))
    else:
        plan = make_plan(spec, simulate=simulate)
        out = render_stack(spec, plan, simulate=simulate, stack_dir=output, faults=faults, spec_path=spec_path)
    return Rendered(target, out, plan.digest(), simulate, replicas)


def write_starter(output: Path, name: str, force: bool) -> Path:
    """Write the commented starter spec to `output` (checked to load first); give its path."""
    from deployctl import spec

    if output.exists() and not force:
        raise InputError(f"{output} already exists", "pass --force to overwrite it")
    spec.parse("", "--name", overrides={"name": name}, flags={"name": "--name"})  # the spec's own name rule
    text = spec.starter(name)
    # The starter names a model directory that does not exist yet: check the rest of it parses, and
    # that the name reads back as given (a newline or ' #' in it would add keys or cut it short).
    written = spec.parse(text.replace("path: ./models/my-model-gptq", "path: ./m"), str(output))
    if written.name != name:
        raise InputError(f"--name {shown(name)!r}: reads back from YAML as {shown(written.name)!r}")
    try:
        fsio.write_atomic(output, text.encode())
    except EnvironmentProblem as exc:  # where to write is the user's choice: bad input, as before
        raise InputError(exc.message, "choose a writable place with -o FILE") from None
    return output


def make_comparison(
    spec: DeploymentSpec,
    hosts: str,
    costs: str | None = None,
    kv_cache_dtype: str = "auto",
    *,
    workload: str | None = None,
    slo_ttft_ms: float | None = None,
    slo_itl_ms: float | None = None,
) -> Comparison:
    """Give `plan --compare`'s table: the spec's model and engine on each host of `hosts` (1xrtx4090,2xa100-80gb),
    with bounds for requests of `workload` (PROMPT:ANSWER tokens) under the SLOs given."""
    from deployctl.planner import bounds, compare

    prompt, answer = compare.parse_workload(workload)
    return compare.compare(
        spec,
        model_facts(spec),
        compare.parse_hosts(hosts),
        costs=compare.parse_costs(costs),
        kv_cache_dtype=kv_cache_dtype,
        workload=bounds.Workload(prompt, answer, slo_ttft_ms, slo_itl_ms),
    )
