"""Find prometheus and promtool (.ci/install-prometheus.sh unpacks Debian's package); CI fails without them."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.k8stools import installed

# Where .ci/install-prometheus.sh leaves the binaries (PROMETHEUS_HOME overrides, as in the script).
PROMETHEUS_BIN = Path(os.environ.get("PROMETHEUS_HOME", "/opt/deployctl-prometheus")) / "current" / "bin"


def tool(name: str) -> str:
    """Give the path of prometheus or promtool; fail in CI, skip elsewhere, when it is missing."""
    return installed(name, PROMETHEUS_BIN, ".ci/install-prometheus.sh")
