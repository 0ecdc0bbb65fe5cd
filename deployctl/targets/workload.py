"""The Workload: an engine-neutral description of the serving container that every target renders.

It knows nothing of Compose or Kubernetes: image, command, environment, GPUs, ports, probes, mounts,
secrets, shared memory and security, built from a Plan (whose engine decided the flags).
"""

from __future__ import annotations

from dataclasses import dataclass

from deployctl import __version__
from deployctl.engines import security as hardening
from deployctl.engines.simulator import SIM_IMAGE, fault_env, sim_env
from deployctl.errors import InputError
from deployctl.plan import ContainerSecurity, Plan
from deployctl.safepath import check_name
from deployctl.stackdir import API_KEY_NAME

SERVICE = "engine"
SIMULATED_START_S = 60  # the simulator loads nothing: a minute is plenty, even on a busy CI host


@dataclass(frozen=True)
class Probe:
    """How a target checks the engine: an HTTP GET on `path` at the container port."""

    path: str
    port: int
    start_budget_s: int  # how long start-up (weights, warm-up) may take before failures count
    tool: str = "curl"  # what the image carries for a check run inside it (curl or python3)
    interval_s: int = 5
    timeout_s: int = 5
    retries: int = 3


@dataclass(frozen=True)
class Mount:
    source: str  # a path on the host
    target: str  # the path inside the container
    read_only: bool = True


@dataclass(frozen=True)
class Secret:
    """A secret the engine reads from its environment, stored apart from the workload (.env, a k8s Secret)."""

    env: str  # the variable the engine reads
    key: str  # the name it is stored under
    value: str


@dataclass(frozen=True)
class Workload:
    name: str
    service: str
    engine: str  # a label: the engine's name, or "<engine>-simulator"
    simulate: bool
    image: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # sorted by name
    gpu_ids: tuple[str, ...]  # device ids the container gets; empty for the simulator
    container_port: int
    bind: str
    host_port: int
    probe: Probe
    mounts: tuple[Mount, ...]
    secrets: tuple[Secret, ...]
    shm_size: str | None
    stop_grace_s: int
    no_new_privileges: bool
    security: ContainerSecurity  # user, capabilities, writable scratch, limits (the engine's, in its module)
    plan_hash: str
    version: str = __version__


def endpoint(plan: Plan) -> str:
    """Give the URL this host reaches the workload at."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(plan.bind, plan.bind)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{plan.port}"


def load_timeout_s(plan: Plan, simulate: bool) -> int:
    """Give how long a start may take: the simulator is quick; the engine says what it needs."""
    if simulate:
        return SIMULATED_START_S
    return plan.engine.start_budget_s


def from_plan(
    plan: Plan,
    *,
    simulate: bool = False,
    api_key: str | None = None,
    sim_image: str = SIM_IMAGE,
    faults: dict[str, str] | None = None,
) -> Workload:
    """Give the workload that serves `plan` (the simulator in the engine's place with `simulate`)."""
    try:  # the served name becomes a path in the container: a folder named 'tiny$HOME' must not
        check_name(plan.served_name, "served name")
    except InputError as exc:
        raise InputError(
            f"{exc.message} (from the model folder's name)", "set model.served_name to a safe name"
        ) from None
    engine = plan.engine
    security = hardening.simulator() if simulate else engine.security
    api_key_env = engine.api_key_env
    if plan.api_key and not api_key:
        raise InputError("the spec asks for an API key but none was resolved")
    env = dict(engine.env)
    env.update(security.env)
    if simulate:
        env.update(sim_env(plan))
        env.update(fault_env(faults or {}))
    elif faults:
        raise InputError("--sim-fault needs --simulate")
    mounts = (Mount(plan.model.path, engine.model_mount),) if engine.model_mount and plan.model.path else ()
    secrets = (Secret(api_key_env, API_KEY_NAME, api_key),) if plan.api_key and api_key else ()
    return Workload(
        name=plan.name,
        service=SERVICE,
        engine=f"{engine.kind}-simulator" if simulate else engine.kind,
        simulate=simulate,
        image=sim_image if simulate else engine.image,
        args=tuple(engine.args),
        env=tuple(sorted(env.items())),
        gpu_ids=() if simulate else tuple(plan.device_ids),
        container_port=engine.container_port,
        bind=plan.bind,
        host_port=plan.port,
        probe=Probe(engine.health_path, engine.container_port, load_timeout_s(plan, simulate), engine.probe_tool),
        mounts=mounts,
        secrets=secrets,
        shm_size=engine.shm_size,
        stop_grace_s=10 if simulate else 90,
        no_new_privileges=True,
        security=security,
        plan_hash=plan.digest(),
    )
