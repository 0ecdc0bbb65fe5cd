"""Find helm, kubectl and the cluster binaries (.ci/install-k8s.sh puts them in its cache); CI fails without them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import ci_setup

# Where .ci/install-k8s.sh leaves the binaries it built or fetched.
K8S_BIN = Path(os.environ.get("K8S_CACHE", "/var/cache/deployctl-k8s")) / "current" / "bin"


# Which CI installer (.ci/install-<name>.sh) provides each tool: the unit tier needs only the quick one.
INSTALLER = {"helm": "kubetools", "kubectl": "kubetools"}


def tool(name: str) -> str:
    """Give the path of a Kubernetes tool; fail in CI, skip elsewhere, when it is missing."""
    installer = INSTALLER.get(name, "k8s")
    return installed(name, K8S_BIN, f".ci/install-{installer}.sh")


def installed(name: str, bin_dir: Path, installer: str) -> str:
    """Give the path of a tool an installer of .ci/ puts in `bin_dir` (else on PATH); fail in CI, skip elsewhere.

    Under .ci/run, which starts the installers beside the tests, this waits for `installer` to finish first.
    """
    ci_setup.wait_for(Path(installer).stem.removeprefix("install-"))
    cached = bin_dir / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is missing: run {installer}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {message}", pytrace=False)
    pytest.skip(message)


def path_with_tools() -> str:
    """Give a PATH where helm and kubectl are the ones the tests use."""
    dirs = {str(Path(tool("helm")).parent), str(Path(tool("kubectl")).parent)}
    return os.pathsep.join([*sorted(dirs), os.environ.get("PATH", "")])
