"""`bundle verify` and `bundle install`: check every byte first, then install so that an interrupted
run can be finished by running it again (a journal records each completed step)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployctl.bundle import signing
from deployctl.bundle.archive import Chunks, Reader, drain, open_bundle
from deployctl.bundle.format import BundleError, Manifest
from deployctl.errors import DeployctlError, EnvironmentProblem

Progress = Callable[[str, int, int | None], None]
Say = Callable[[str], None]
JOURNAL_DIR = ".deployctl-install"


@dataclass(frozen=True)
class Verified:
    name: str
    manifest_sha256: str
    trust: str
    entries: int
    bytes: int


def _open_trusted(path: Path, pubkey: Path | None, insecure: bool) -> tuple[Reader, str]:
    reader = open_bundle(path)
    try:
        trust = signing.check(reader.manifest_raw, reader.signature_raw, pubkey, insecure)
    except BaseException:
        reader.close()
        raise
    return reader, trust


def verify(path: Path, pubkey: Path | None, insecure: bool = False, progress: Progress | None = None) -> Verified:
    """Check completeness, every checksum and the signature, reading each byte once; name the first bad file."""
    reader, trust = _open_trusted(path, pubkey, insecure)
    total = reader.manifest.total_size()
    done = 0
    try:
        for entry, chunks in reader.entries():
            for chunk in chunks:
                done += len(chunk)
                if progress:
                    progress(entry.path, done, total)
    finally:
        reader.close()
    return Verified(
        reader.manifest.name, hashlib.sha256(reader.manifest_raw).hexdigest(), trust, len(reader.manifest.entries), done
    )


@dataclass
class Journal:
    """What an install of one bundle has finished, kept in TARGET/.deployctl-install/<manifest>.json."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, target: Path, manifest_sha: str) -> Journal:
        path = target / JOURNAL_DIR / f"{manifest_sha[:24]}.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        data.setdefault("images", [])
        data.setdefault("model_files", [])
        return cls(path, data)

    def done(self, key: str) -> bool:
        return bool(self.data.get(key))

    def mark(self, key: str, value: Any = True) -> None:
        self.data[key] = value
        self.save()

    def add(self, key: str, item: str) -> None:
        self.data[key].append(item)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Installed:
    target: str
    model_dir: str
    spec: str
    stack_dir: str
    images: list[str]
    skipped_steps: list[str]
    trust: str


def _free(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _preflight(manifest: Manifest, target: Path, journal: Journal) -> None:
    from deployctl import docker

    info = docker.info()  # raises EnvironmentProblem when the engine is not there
    model_left = sum(
        e.size for e in manifest.entries if e.kind == "model" and e.path not in journal.data["model_files"]
    )
    if _free(target) < model_left + 64 * 1024 * 1024:
        raise EnvironmentProblem(
            f"not enough disk at {target}: the model needs {model_left / 2**30:.1f} GiB, {_free(target) / 2**30:.1f} GiB free",
            "free space there or choose --target elsewhere",
        )
    images_left = sum(i.uncompressed_size for i in manifest.images if i.file not in journal.data["images"])
    root = Path(info.root_dir)
    if images_left and root.exists() and _free(root) < images_left:
        raise EnvironmentProblem(
            f"not enough disk for the images at {root}: {images_left / 2**30:.1f} GiB needed, {_free(root) / 2**30:.1f} GiB free"
        )


def _load_image(chunks: Chunks, progress: Progress, label: str, total: int) -> None:
    import zstandard

    from deployctl import docker

    def decompressed() -> Iterator[bytes]:
        d = zstandard.ZstdDecompressor().decompressobj()
        done = 0
        for chunk in chunks:
            done += len(chunk)
            progress(label, done, total)
            out = d.decompress(chunk)
            if out:
                yield out

    try:
        docker.load_image(decompressed())
    except docker.DockerFailed as exc:
        raise DeployctlError(f"docker load of {label} failed: {exc.message}") from None


def _write_model_file(chunks: Chunks, dest: Path, progress: Progress, label: str, total: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    done = 0
    try:
        with tmp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                done += len(chunk)
                progress(label, done, total)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install(
    path: Path,
    target: Path,
    pubkey: Path | None,
    insecure: bool = False,
    simulate: bool = False,
    progress: Progress | None = None,
    say: Say | None = None,
    *,
    render: Callable[[Path], Path],
) -> Installed:
    """Verify the bundle, then load its images, place its model and render its stack under `target`.

    `render` renders the stack of the spec file it is given and gives the stack's directory.

    Run again after an interruption: finished steps are skipped, half-copied files are not trusted.
    """
    progress = progress or (lambda item, done, total: None)
    say = say or (lambda text: None)
    target = target.absolute()
    reader, trust = _open_trusted(path, pubkey, insecure)
    reader.close()
    manifest = reader.manifest
    manifest_sha = hashlib.sha256(reader.manifest_raw).hexdigest()
    journal = Journal.load(target, manifest_sha)
    skipped = []
    if manifest.model_name is None:
        raise BundleError("the bundle carries no model")
    _preflight(manifest, target, journal)
    if journal.done("verified"):
        skipped.append("verify")
    else:
        say("verifying every file before changing anything")
        verify(path, pubkey, insecure, progress)
        journal.mark("verified")
    models = target / "models"
    final_model = models / manifest.model_name
    staging = models / f".{manifest.model_name}.partial-{manifest_sha[:12]}"
    if journal.done("model_placed"):
        skipped.append("model")
    elif not journal.data["model_files"]:
        shutil.rmtree(staging, ignore_errors=True)  # left by an earlier run that recorded nothing: not trusted
    spec_raw = b""
    reader, _ = _open_trusted(path, pubkey, insecure)
    try:
        for entry, chunks in reader.entries():
            if entry.kind == "image":
                if entry.path in journal.data["images"]:
                    skipped.append(entry.path)
                    drain(chunks)
                    continue
                say(f"loading {entry.path} into Docker")
                _load_image(chunks, progress, entry.path, entry.size)
                journal.add("images", entry.path)
                say(f"loaded {entry.path}")
            elif entry.kind == "model":
                rel = entry.path.split("/", 2)[2]
                if journal.done("model_placed") or entry.path in journal.data["model_files"]:
                    drain(chunks)
                    continue
                say(f"copying model file {rel}")
                _write_model_file(chunks, staging / rel, progress, entry.path, entry.size)
                journal.add("model_files", entry.path)
            elif entry.kind == "spec":
                spec_raw = b"".join(chunks)
            else:
                drain(chunks)
    finally:
        reader.close()
    if not journal.done("model_placed"):
        _place(staging, final_model)
        journal.mark("model_placed")
        say(f"model in place at {final_model}")
    spec_path = target / "deployctl.yaml"
    _atomic_write(spec_path, spec_raw)
    stack_dir = render(spec_path)
    journal.mark("stack", str(stack_dir))
    journal.mark("completed_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    say(f"stack rendered in {stack_dir}")
    tags = [t for i in manifest.images for t in i.tags]
    return Installed(str(target), str(final_model), str(spec_path), str(stack_dir), tags, skipped, trust)


def _place(staging: Path, final: Path) -> None:
    """Put the fully copied model in place with renames; an existing model is replaced whole."""
    if not staging.is_dir():
        raise BundleError(f"the model's staging folder {staging} is gone: run install again")
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
