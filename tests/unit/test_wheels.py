"""`bundle create --wheels auto` after a normal `pip install`: deployctl's wheel rebuilt from its installed files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import deployctl
from deployctl.bundle import wheels

PACKAGE = Path(deployctl.__file__).parent


def installed_like_pip(site: Path) -> metadata.Distribution:
    """A site-packages as `pip install deployctl` leaves it: the package, its .dist-info and a RECORD."""
    shutil.copytree(PACKAGE, site / "deployctl", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "deployctl" / "__pycache__").mkdir()
    (site / "deployctl" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0" * 16)
    info = site / f"deployctl-{deployctl.__version__}.dist-info"
    info.mkdir()
    requires = "".join(f"Requires-Dist: {r}\n" for r in metadata.requires("deployctl") or [])
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: deployctl\nVersion: {deployctl.__version__}\n{requires}"
    )
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: setuptools (80.0)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    (info / "entry_points.txt").write_text("[console_scripts]\ndeployctl = deployctl.cli:main\n")
    (info / "INSTALLER").write_text("pip\n")
    rows = [f"{p.relative_to(site).as_posix()},sha256=x,1" for p in sorted(site.rglob("*")) if p.is_file()]
    rows += ["../../../bin/deployctl,sha256=x,1", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return metadata.PathDistribution(info)


def test_the_wheel_of_an_installed_deployctl_installs_and_runs_offline(tmp_path: Path) -> None:
    dist = installed_like_pip(tmp_path / "site")
    (tmp_path / "out").mkdir()
    wheel = wheels.wheel_from_installed(dist, tmp_path / "out")
    assert wheel.name == f"deployctl-{deployctl.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"deployctl-{deployctl.__version__}.dist-info"
        assert {"deployctl/cli/__init__.py", "deployctl/templates/compose.yaml.j2", f"{info}/METADATA"} <= names
        assert not any("__pycache__" in n or n.startswith("..") for n in names)
        assert f"{info}/INSTALLER" not in names
        for row in z.read(f"{info}/RECORD").decode().splitlines():  # a RECORD that pip can check
            name, digest, size = row.split(",")
            if digest:
                data = z.read(name)
                assert digest.startswith("sha256=") and int(size) == len(data)
        assert "Tag: py3-none-any" in z.read(f"{info}/WHEEL").decode()
    requirements = wheels.wheel_requirements(wheel)
    assert any(r.startswith("click") for r in requirements) and not any("extra ==" in r for r in requirements)
    target = tmp_path / "target"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "bin" / "deployctl").is_file()  # the console script, written again by pip
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import deployctl.cli, deployctl.templating; print(deployctl.cli.__file__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith(str(target)), run.stderr
    source = (PACKAGE / "cli" / "__init__.py").read_bytes()
    assert (
        hashlib.sha256((target / "deployctl" / "cli" / "__init__.py").read_bytes()).digest()
        == hashlib.sha256(source).digest()
    )


def test_a_folder_of_wheels_is_copied_and_an_empty_one_refused(tmp_path: Path) -> None:
    import pytest

    from deployctl.errors import InputError

    src = tmp_path / "src"
    src.mkdir()
    (src / "a-1-py3-none-any.whl").write_bytes(b"PK")
    assert [w.name for w in wheels.collect(tmp_path / "dest", str(src))] == ["a-1-py3-none-any.whl"]
    with pytest.raises(InputError, match=r"no \*\.whl files"):
        wheels.collect(tmp_path / "dest2", str(tmp_path))


def test_a_failing_pip_is_one_line_with_its_error() -> None:
    from deployctl.errors import DeployctlError

    said: list[str] = []
    with pytest.raises(DeployctlError) as err:
        wheels._pip(["no-such-command"], said.append, env={"SOURCE_DATE_EPOCH": "315532800"})
    assert err.value.message.startswith("collecting wheels failed: pip no-such-command: ERROR: unknown command")
    assert err.value.hint == "pass --wheels DIR with wheels prepared elsewhere"
    assert said == []  # only pip's progress lines (Collecting, Saved, ...) are passed on
