"""The one typed facade over `kubectl` and `helm`, the same shape as `docker/`.

Only this package runs kubectl or helm; the rest of deployctl gets dataclasses and project errors
(errors.py holds the one table from the tools' words to them).
"""

from deployctl.kube.client import RELEASE_NAME, RELEASE_NAME_MAX, Cluster, Kube, check_release_name
from deployctl.kube.errors import Forbidden, NotFound, ToolError, explain, last_line
from deployctl.kube.pods import GPU_RESOURCE, IMAGE_REASONS, INSTANCE_LABEL, PodState, pod_state, pods, probe_failure

__all__ = [
    "GPU_RESOURCE",
    "IMAGE_REASONS",
    "INSTANCE_LABEL",
    "RELEASE_NAME",
    "RELEASE_NAME_MAX",
    "Cluster",
    "Forbidden",
    "Kube",
    "NotFound",
    "PodState",
    "ToolError",
    "check_release_name",
    "explain",
    "last_line",
    "pod_state",
    "pods",
    "probe_failure",
]
