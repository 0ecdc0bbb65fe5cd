"""The one typed facade over `kubectl` and `helm`, the same shape as `docker/`.

Only this package runs kubectl or helm (through `deployctl.tools.run`); the rest of deployctl gets
typed objects parsed from `-o json` (resources.py) and project errors (errors.py holds the one table
from the tools' words to them).
"""

from deployctl.kube.client import (
    RELEASE_NAME,
    RELEASE_NAME_MAX,
    Cluster,
    Kube,
    check_release_name,
    kubeconfig_problem,
    one_error,
    require,
    template,
    tool_problems,
)
from deployctl.kube.errors import Forbidden, NotFound, explain
from deployctl.kube.resources import (
    GPU_RESOURCE,
    INSTANCE_LABEL,
    PLAN_HASH_LABEL,
    Deployment,
    Endpoints,
    Event,
    ManifestObject,
    Node,
    Pod,
    PodState,
    Release,
    Service,
)

__all__ = [
    "GPU_RESOURCE",
    "INSTANCE_LABEL",
    "PLAN_HASH_LABEL",
    "RELEASE_NAME",
    "RELEASE_NAME_MAX",
    "Cluster",
    "Deployment",
    "Endpoints",
    "Event",
    "Forbidden",
    "Kube",
    "ManifestObject",
    "Node",
    "NotFound",
    "Pod",
    "PodState",
    "Release",
    "Service",
    "check_release_name",
    "explain",
    "kubeconfig_problem",
    "one_error",
    "require",
    "template",
    "tool_problems",
]
