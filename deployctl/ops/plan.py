"""From a spec to a plan and a rendered stack: the steps `init`, `plan`, `render` and `up` share."""

from __future__ import annotations

from pathlib import Path

from deployctl import models, planner
from deployctl.errors import InputError
from deployctl.hardware import inventory
from deployctl.models import ModelFacts
from deployctl.planner.compare import Comparison
from deployctl.planner.types import Plan
from deployctl.spec import DeploymentSpec

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


def render_stack(
    spec: DeploymentSpec,
    plan: Plan,
    simulate: bool = False,
    stack_dir: Path | None = None,
    faults: dict[str, str] | None = None,
    spec_path: Path | None = None,
) -> Path:
    """Render the plan into the spec's stack directory (keeping the operator's files there) and give its path."""
    from deployctl import stackdir
    from deployctl.ops import owner
    from deployctl.targets import compose

    target = (stack_dir or spec.stack_dir).absolute()
    labels = owner.labels(target, spec_path)
    files = compose.render(
        plan,
        simulate=simulate,
        api_key=spec.resolve_api_key(),
        faults=faults,
        labels=labels,
        monitoring=spec.monitoring,
    )
    revision = stackdir.next_revision(stackdir.rendered_files(target), files, target)
    return stackdir.write_stack(files, target, revision=revision, spec=spec_path)


def write_starter(output: Path, name: str, force: bool) -> Path:
    """Write the commented starter spec to `output` (checked to load first); give its path."""
    from deployctl import spec

    if output.exists() and not force:
        raise InputError(f"{output} already exists", "pass --force to overwrite it")
    text = spec.starter(name)
    # The starter names a model directory that does not exist yet: check the rest of it parses.
    spec.parse(text.replace("path: ./models/my-model-gptq", "path: ./m"), str(output))
    try:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text)
        tmp.replace(output)
    except OSError as exc:
        raise InputError(f"{output}: cannot write: {exc.strerror}") from None
    return output


def make_comparison(
    spec: DeploymentSpec, hosts: str, costs: str | None = None, kv_cache_dtype: str = "auto"
) -> Comparison:
    """Give `plan --compare`'s table: the spec's model and engine on each host of `hosts` (1xrtx4090,2xa100-80gb)."""
    from deployctl.planner import compare

    return compare.compare(
        spec,
        model_facts(spec),
        compare.parse_hosts(hosts),
        costs=compare.parse_costs(costs),
        kv_cache_dtype=kv_cache_dtype,
    )
