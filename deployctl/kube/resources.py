"""What kubectl and helm say, parsed from `-o json` into typed objects: only the fields deployctl reads.

Each model mirrors the part of the Kubernetes (or Helm) object it reads, under its own JSON names;
fields the cluster leaves out get the API's defaults, and everything else is ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_LABEL = "app.kubernetes.io/instance"
PLAN_HASH_LABEL = "ai.deployctl/plan-hash"
# Container waiting reasons that mean the image is not on the node (kubelet's images/types.go).
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


class _Json(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Metadata(_Json):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = Field(None, alias="deletionTimestamp")


class Condition(_Json):
    type: str
    status: str = "Unknown"
    reason: str = ""
    message: str = ""


class Waiting(_Json):
    reason: str = ""
    message: str = ""


class Terminated(_Json):
    exit_code: int | None = Field(None, alias="exitCode")


class ContainerState(_Json):
    waiting: Waiting | None = None
    running: dict[str, Any] | None = None
    terminated: Terminated | None = None


class ContainerStatus(_Json):
    name: str = ""
    image: str = ""
    ready: bool = False
    restart_count: int = Field(0, alias="restartCount")
    state: ContainerState = Field(default_factory=ContainerState)
    last_state: ContainerState = Field(default_factory=ContainerState, alias="lastState")


class PodSpec(_Json):
    node_name: str | None = Field(None, alias="nodeName")


class PodStatus(_Json):
    phase: str = "Unknown"
    conditions: list[Condition] = Field(default_factory=list)
    container_statuses: list[ContainerStatus] = Field(default_factory=list, alias="containerStatuses")
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class PodState:
    """One pod as `k8s status` shows it: where it runs, whether it is Ready, and if not, why."""

    name: str
    phase: str
    ready: bool
    restarts: int
    node: str
    problem: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Pod(_Json):
    metadata: Metadata
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == kind), None)

    @property
    def ready(self) -> bool:
        ready = self.condition("Ready")
        return ready is not None and ready.status == "True"

    def problem(self) -> str | None:
        """Give why the pod is not Ready, in the user's words (None when it is, or when nothing says)."""
        if self.ready:
            return None
        problem = None
        scheduled = self.condition("PodScheduled")
        if scheduled is not None and scheduled.status == "False":
            if GPU_RESOURCE in scheduled.message:
                problem = f"no node has the free GPUs it asks for ({scheduled.message})"
            else:
                problem = f"not scheduled: {scheduled.message or scheduled.reason or 'unknown'}"
        for c in self.status.container_statuses:
            waiting = c.state.waiting or Waiting()
            if waiting.reason in IMAGE_REASONS:
                node = self.spec.node_name or "?"
                problem = f"image {c.image} is not present on node {node} ({waiting.reason})"
            elif waiting.reason == "CrashLoopBackOff":
                last = c.last_state.terminated.exit_code if c.last_state.terminated else None
                problem = f"the engine keeps exiting (exit code {last}, {c.restart_count} restarts)"
            elif waiting.reason and waiting.reason != "ContainerCreating":
                problem = f"{waiting.reason}: {waiting.message}".strip(": ")
            elif c.state.running is not None and not c.ready:
                problem = problem or "running, but its health probe does not pass yet"
        if not problem and self.status.reason:
            problem = f"{self.status.reason}: {self.status.message}"
        return problem

    def state(self) -> PodState:
        """Give the pod's state and, when it is not Ready, the reason in the user's words."""
        return PodState(
            name=self.metadata.name,
            phase=self.status.phase,
            ready=self.ready,
            restarts=sum(c.restart_count for c in self.status.container_statuses),
            node=self.spec.node_name or "-",
            problem=self.problem(),
        )


class DeploymentSpec(_Json):
    replicas: int = 0  # the API server fills it in (1 when the manifest leaves it out)


class DeploymentStatus(_Json):
    ready_replicas: int = Field(0, alias="readyReplicas")


class Deployment(_Json):
    metadata: Metadata
    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)
    status: DeploymentStatus = Field(default_factory=DeploymentStatus)


class ServicePort(_Json):
    port: int = 0


class ServiceSpec(_Json):
    cluster_ip: str = Field("", alias="clusterIP")
    ports: list[ServicePort] = Field(default_factory=list)


class Service(_Json):
    metadata: Metadata
    spec: ServiceSpec = Field(default_factory=ServiceSpec)

    @property
    def port(self) -> int:
        return self.spec.ports[0].port if self.spec.ports else 0


class EndpointSubset(_Json):
    addresses: list[dict[str, Any]] = Field(default_factory=list)


class Endpoints(_Json):
    metadata: Metadata
    subsets: list[EndpointSubset] | None = None

    @property
    def ready_addresses(self) -> int:
        return sum(len(s.addresses) for s in self.subsets or [])


class ObjectReference(_Json):
    name: str = ""


class Event(_Json):
    involved_object: ObjectReference = Field(default_factory=ObjectReference, alias="involvedObject")
    message: str = ""
    last_timestamp: str | None = Field(None, alias="lastTimestamp")


class NodeStatus(_Json):
    allocatable: dict[str, str] = Field(default_factory=dict)


class Node(_Json):
    metadata: Metadata
    status: NodeStatus = Field(default_factory=NodeStatus)

    @property
    def gpus(self) -> int:
        """Give the GPUs the node offers to pods (the device plugin's allocatable nvidia.com/gpu)."""
        return int(self.status.allocatable.get(GPU_RESOURCE, "0"))


T = TypeVar("T", bound=_Json)


class ObjectList(_Json, Generic[T]):
    items: list[T] = Field(default_factory=list)


class ChartMetadata(_Json):
    name: str = "?"
    version: str = "?"
    app_version: str = Field("", alias="appVersion")


class Chart(_Json):
    metadata: ChartMetadata = Field(default_factory=ChartMetadata)


class ReleaseInfo(_Json):
    status: str = "unknown"


class Release(_Json):
    """A Helm release as `helm status -o json` gives it."""

    name: str
    version: int = 0  # the revision
    info: ReleaseInfo = Field(default_factory=ReleaseInfo)
    chart: Chart = Field(default_factory=Chart)


@dataclass(frozen=True)
class ManifestObject:
    """One object of a rendered or installed manifest: its kind and name (`Deployment/llm`)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"
