"""What the cluster says about a release: its pods' states and the events that explain them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployctl.errors import DeployctlError
from deployctl.kube.client import Kube

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Container waiting reasons that mean the image is not on the node (kubelet's images/types.go).
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    restarts: int
    node: str
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pod_state(pod: dict[str, Any]) -> PodState:
    """Give a pod's state and, when it is not Ready, the reason in the user's words."""
    status = pod.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    containers = status.get("containerStatuses", [])
    ready = conditions.get("Ready", {}).get("status") == "True"
    problem = None
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False":
        msg = scheduled.get("message", "")
        if GPU_RESOURCE in msg:
            problem = f"no node has the free GPUs it asks for ({msg})"
        else:
            problem = f"not scheduled: {msg or scheduled.get('reason', 'unknown')}"
    for c in containers:
        waiting = c.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in IMAGE_REASONS:
            problem = f"image {c.get('image')} is not present on node {pod['spec'].get('nodeName', '?')} ({reason})"
        elif reason == "CrashLoopBackOff":
            last = (c.get("lastState", {}).get("terminated") or {}).get("exitCode")
            problem = f"the engine keeps exiting (exit code {last}, {c.get('restartCount', 0)} restarts)"
        elif reason and reason != "ContainerCreating":
            problem = f"{reason}: {waiting.get('message', '')}".strip(": ")
        elif c.get("state", {}).get("running") and not c.get("ready"):
            problem = problem or "running, but its health probe does not pass yet"
    if not problem and status.get("reason"):
        problem = f"{status['reason']}: {status.get('message', '')}"
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=ready,
        restarts=sum(c.get("restartCount", 0) for c in containers),
        node=pod["spec"].get("nodeName") or "-",
        problem=None if ready else problem,
    )


def pods(kube: Kube, release: str, *, terminating: bool = False) -> list[PodState]:
    """Give the release's pods (and, with `terminating`, those being deleted too)."""
    data = kube.json("kubectl", "get", "pods", "-l", f"{INSTANCE_LABEL}={release}")
    items = data.get("items", [])
    return [pod_state(p) for p in items if terminating or not p["metadata"].get("deletionTimestamp")]


def probe_failure(kube: Kube, pod_names: set[str]) -> str | None:
    """Give the last probe-failure event of these pods, if any (why a running pod is not Ready)."""
    try:
        events = kube.json("kubectl", "get", "events", "--field-selector", "type=Warning,reason=Unhealthy")
    except DeployctlError:
        return None
    mine = [e for e in events.get("items", []) if e.get("involvedObject", {}).get("name") in pod_names]
    if not mine:
        return None
    last = max(mine, key=lambda e: e.get("lastTimestamp") or "")
    return str(last.get("message", "")).strip()
