"""Find prometheus and promtool (.ci/install-prometheus.sh unpacks Debian's package); CI fails without them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Where .ci/install-prometheus.sh leaves the binaries (PROMETHEUS_HOME overrides, as in the script).
PROMETHEUS_BIN = Path(os.environ.get("PROMETHEUS_HOME", "/opt/deployctl-prometheus")) / "current" / "bin"


def tool(name: str) -> str:
    """Give the path of prometheus or promtool; fail in CI, skip elsewhere, when it is missing."""
    installed = PROMETHEUS_BIN / name
    if installed.is_file() and os.access(installed, os.X_OK):
        return str(installed)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is missing: run .ci/install-prometheus.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {message}", pytrace=False)
    pytest.skip(message)
