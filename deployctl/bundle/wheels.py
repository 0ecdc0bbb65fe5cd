"""deployctl and its dependencies as wheels, for `pip install --no-index` at a site without a network.

`--wheels auto` works however deployctl was installed: from a source tree it runs `pip wheel` on the
tree; from a normal `pip install` it rebuilds deployctl's own wheel from the installed files that
the distribution's RECORD lists (a wheel is a zip of exactly those files plus its .dist-info). The
dependencies come from `pip download` of the Requires-Dist lines of that wheel, for this Python or
the one asked for.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import sys
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from deployctl import tools
from deployctl.errors import DeployctlError, InputError
from deployctl.fsio import atomic_writer, ensure_dir, open_regular

Say = Callable[[str], None]

# .dist-info files that describe one installation, not the package: a wheel does not carry them.
_INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def project_root() -> Path | None:
    """Give deployctl's source tree when it is installed from one (pip install -e . or a checkout)."""
    import deployctl

    root = Path(deployctl.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def collect(dest: Path, source: str, *, python_version: str | None = None, say: Say | None = None) -> list[Path]:
    """Put deployctl and its dependencies as wheels in `dest`: from a folder, or built and downloaded ('auto')."""
    say = say or (lambda line: None)
    ensure_dir(dest, within=dest.parent)
    if source != "auto":
        src = Path(source)
        found = sorted(src.glob("*.whl")) if src.is_dir() else []
        if not found:
            raise InputError(f"--wheels {source}: no *.whl files there")
        for w in found:
            with open_regular(w, "wheel") as fin, atomic_writer(dest / w.name, within=dest) as fout:
                shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)
        return sorted(dest.glob("*.whl"))
    own = own_wheel(dest, say)
    requirements = wheel_requirements(own)
    target = ["--python-version", python_version, "--only-binary=:all:"] if python_version else []
    for_python = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    say(f"wheels: downloading {len(requirements)} dependencies and theirs for Python {for_python} (pip download)")
    _pip(["download", "--progress-bar", "off", "-d", str(dest), *target, *requirements], say)
    found = sorted(dest.glob("*.whl"))
    say(f"wheels: {len(found)} wheels, {sum(w.stat().st_size for w in found) / 1e6:.1f} MB")
    return found


def own_wheel(dest: Path, say: Say) -> Path:
    """Give deployctl's own wheel in `dest`: built from the source tree, or from the installed distribution."""
    root = project_root()
    if root is not None:
        say(f"wheels: building deployctl's wheel from the source tree {root} (pip wheel)")
        _pip(["wheel", "--no-deps", "-w", str(dest), str(root)], say, env=_REPRODUCIBLE)
        return next(dest.glob("deployctl-*.whl"))
    dist = metadata.distribution("deployctl")
    say(f"wheels: building deployctl {dist.version}'s wheel from its installed files")
    return wheel_from_installed(dist, dest)


def wheel_from_installed(dist: metadata.Distribution, dest: Path) -> Path:
    """Write the wheel of an installed pure-Python distribution from the files its RECORD lists."""
    files = [f for f in dist.files or [] if _belongs_in_wheel(str(f))]
    if not files:
        raise DeployctlError(
            f"{dist.metadata['Name']} {dist.version}: its installed files are not listed (no RECORD)",
            "pass --wheels DIR with wheels prepared elsewhere",
        )
    name = dist.metadata["Name"].replace("-", "_")
    info = f"{name}-{dist.version}.dist-info"
    path = dest / f"{name}-{dist.version}-py3-none-any.whl"
    record: list[tuple[str, str, str]] = []
    with atomic_writer(path, within=dest) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(files, key=str):
            arc = f.as_posix()
            if arc.split("/", 1)[0].endswith(".dist-info"):
                arc = f"{info}/{arc.split('/', 1)[1]}"
            data = Path(str(f.locate())).read_bytes()
            if arc == f"{info}/WHEEL":
                data = _pure_wheel_file(data)
            _add(z, arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append((arc, f"sha256={digest}", str(len(data))))
        if not any(r[0] == f"{info}/WHEEL" for r in record):
            data = _pure_wheel_file(b"")
            _add(z, f"{info}/WHEEL", data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append((f"{info}/WHEEL", f"sha256={digest}", str(len(data))))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerows([*record, (f"{info}/RECORD", "", "")])
        _add(z, f"{info}/RECORD", text.getvalue().encode())
    return path


# Wheels built from the same files are the same bytes (a delta bundle leaves out a wheel its base has,
# by sha256): every zip member gets this time, the earliest a zip can hold (as SOURCE_DATE_EPOCH does).
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "315532800"}


def _add(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def _belongs_in_wheel(rel: str) -> bool:
    if rel.startswith("..") or rel.startswith("/"):
        return False  # console scripts in bin/: pip writes them again from entry_points.txt
    parts = rel.split("/")
    if "__pycache__" in parts or rel.endswith(".pyc"):
        return False
    if parts[0].endswith(".dist-info"):
        return len(parts) == 2 and parts[1] not in _INSTALL_ONLY
    return not parts[0].endswith(".pth")  # an editable install's path hook is no part of the package


def _pure_wheel_file(data: bytes) -> bytes:
    """Give a WHEEL file that says what the rebuilt wheel is: pure Python, any platform."""
    keep = [
        line
        for line in data.decode().splitlines()
        if line.strip() and not line.startswith(("Tag:", "Root-Is-Purelib:", "Generator:"))
    ]
    if not any(line.startswith("Wheel-Version:") for line in keep):
        keep.insert(0, "Wheel-Version: 1.0")
    return ("\n".join([*keep, "Generator: deployctl", "Root-Is-Purelib: true", "Tag: py3-none-any"]) + "\n").encode()


def wheel_requirements(wheel: Path) -> list[str]:
    """Give the Requires-Dist lines (no extras) of a wheel: what was just built, not what is installed."""
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(z.read(meta).decode())
    return [r for r in headers.get_all("Requires-Dist") or [] if "extra ==" not in r]


def _pip(args: list[str], say: Say, env: dict[str, str] | None = None) -> None:
    """Run pip, passing its lines on as progress (it can take minutes); a failure raises with its last line."""
    proc = tools.start([sys.executable, "-m", "pip", *args], env=env)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = [*tail[-19:], line]
                if line.lstrip().startswith(("Collecting", "Saved", "Downloading", "Building", "File was already")):
                    say(f"  pip: {line.strip()}")
        returncode = proc.wait()
    finally:
        tools.stop(proc)  # interrupted while reading: pip does not go on downloading behind us
    if returncode != 0:
        errors = [line for line in tail if "ERROR" in line] or tail or ["(no output)"]
        raise DeployctlError(
            f"collecting wheels failed: pip {args[0]}: {errors[-1].strip()}",
            "pass --wheels DIR with wheels prepared elsewhere",
        )
