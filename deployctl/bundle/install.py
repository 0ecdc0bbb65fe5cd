"""`bundle verify` and `bundle install`: check every byte first, then install so that an interrupted
run can be finished by running it again (a journal records each completed step)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deployctl.bundle import delta, images, signing
from deployctl.bundle.archive import Reader, drain, open_bundle
from deployctl.bundle.blobs import stage_blob, stage_file
from deployctl.bundle.format import CHUNK, BundleError, Manifest, blob_file
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.safepath import is_under, within

Progress = Callable[[str, int, int | None], None]
Say = Callable[[str], None]
JOURNAL_DIR = ".deployctl-install"
SPEC_ENTRY = "spec/deployctl.yaml"


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
    return _verify(path, pubkey, insecure, progress)[0]


def _verify(
    path: Path, pubkey: Path | None, insecure: bool, progress: Progress | None, keep: frozenset[str] = frozenset()
) -> tuple[Verified, dict[str, bytes]]:
    """Verify as `verify` does; also give the bytes of the (small) entries named in `keep`."""
    reader, trust = _open_trusted(path, pubkey, insecure)
    total = reader.manifest.total_size()
    done = 0
    kept: dict[str, bytes] = {}
    try:
        for entry, chunks in reader.entries():
            held: list[bytes] | None = [] if entry.path in keep else None
            for chunk in chunks:
                done += len(chunk)
                if held is not None:
                    held.append(chunk)
                if progress:
                    progress(entry.path, done, total)
            if held is not None:
                kept[entry.path] = b"".join(held)
    finally:
        reader.close()
    manifest_sha = hashlib.sha256(reader.manifest_raw).hexdigest()
    return Verified(reader.manifest.name, manifest_sha, trust, len(reader.manifest.entries), done), kept


@dataclass
class Journal:
    """What an install of one bundle has finished, kept in TARGET/.deployctl-install/<manifest>.json."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, journal_dir: Path, manifest_sha: str) -> Journal:
        path = journal_dir / f"{manifest_sha[:24]}.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
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


@dataclass(frozen=True)
class Places:
    """Every path an install writes, each checked to stay under the target (symlinks resolved)."""

    target: Path
    journal_dir: Path
    images: Path  # verified image bytes wait here for `docker load`
    model: Path
    staging: Path
    spec: Path
    stack: Path


def _places(manifest: Manifest, target: Path, manifest_sha: str) -> Places:
    """Give where the install writes, or a BundleError before anything is written."""
    if manifest.model_name is None:
        raise BundleError("the bundle carries no model")
    if target.exists() and not target.is_dir():
        raise InputError(f"--target {target} exists and is not a directory")
    root = target.resolve()
    model = within(root, f"models/{manifest.model_name}", "model_name")
    journal_dir = root / JOURNAL_DIR
    staging = model.parent / f".{model.name}.partial-{manifest_sha[:12]}"
    places = Places(
        target=root,
        journal_dir=journal_dir,
        images=journal_dir / "images",
        model=model,
        staging=staging,
        spec=within(root, "deployctl.yaml", "the spec"),
        stack=within(root, "stack", "the stack"),
    )
    for p in (journal_dir, places.images, staging):
        if not is_under(root, p):
            raise BundleError(f"{p.relative_to(root)} leads outside {target} (through a symlink)")
    return places


def _check_spec(raw: bytes | None, manifest: Manifest) -> None:
    """Refuse a bundled spec that would put the model or the stack anywhere but under the target."""
    from deployctl import spec as specs

    where = f"{SPEC_ENTRY} in the bundle"
    if raw is None:
        raise BundleError(f"the bundle carries no {SPEC_ENTRY}")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BundleError(f"{where}: not UTF-8 text") from None
    s = specs.parse(text, where)
    if s.model.path != Path("models", str(manifest.model_name)):
        raise BundleError(f"{where}: model.path must be models/{manifest.model_name}, not {s.model.path}")
    if s.stack_dir != Path("stack"):
        raise BundleError(f"{where}: stack_dir must be stack, not {s.stack_dir}")
    if s.serve.api_key_file is not None:
        raise BundleError(f"{where}: serve.api_key_file is set", "a bundle never names files on the site")


def _preflight(manifest: Manifest, target: Path, journal: Journal) -> None:
    from deployctl import docker

    info = docker.info()  # raises EnvironmentProblem when the engine is not there
    done = set(journal.data["model_files"])
    model_left = sum(e.size for e in manifest.entries if e.kind == "model" and e.path not in done)
    model_left += sum(f.size for f in manifest.from_base if f.path not in done)
    images_left = 0 if journal.done("images_loaded") else sum(b.size for b in manifest.blobs)
    # Verified blobs wait at the target for `docker load`, which unpacks them again at Docker's root.
    needed = model_left + images_left + 64 * 1024 * 1024
    if _free(target) < needed:
        raise EnvironmentProblem(
            f"not enough disk at {target}: {needed / 2**30:.1f} GiB needed (model and images), {_free(target) / 2**30:.1f} GiB free",
            "free space there or choose --target elsewhere",
        )
    root = Path(info.root_dir)
    if images_left and root.exists() and _free(root) < images_left:
        raise EnvironmentProblem(
            f"not enough disk for the images at {root}: {images_left / 2**30:.1f} GiB needed, {_free(root) / 2**30:.1f} GiB free"
        )


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
    base: Path | None = None,
) -> Installed:
    """Verify the bundle, then load its images, place its model and render its stack under `target`.

    `render` renders the stack of the spec file it is given and gives the stack's directory.

    Every path is checked and every byte verified before anything is written. A delta bundle
    takes what it does not carry from the base installed at `target` (or from `base`, the base
    bundle), checking those bytes against its own manifest. Run again after an interruption:
    finished steps are skipped, half-copied files are not trusted, and the bundle is verified
    again (it may have changed in between).
    """
    progress = progress or (lambda item, done, total: None)
    say = say or (lambda text: None)
    reader, trust = _open_trusted(path, pubkey, insecure)
    reader.close()
    manifest = reader.manifest
    manifest_sha = hashlib.sha256(reader.manifest_raw).hexdigest()
    places = _places(manifest, target.absolute(), manifest_sha)
    journal = Journal.load(places.journal_dir, manifest_sha)
    model_done = journal.done("model_placed")
    sources = delta.find(
        manifest,
        target=places.target,
        base_done=manifest.base is not None
        and Journal.load(places.journal_dir, manifest.base.manifest_sha256).done("completed_at"),
        need_blobs=not journal.done("images_loaded"),
        files_done={f.path for f in manifest.from_base} if model_done else set(journal.data["model_files"]),
        base_bundle=base,
    )
    _preflight(manifest, places.target, journal)
    say("verifying every file before changing anything")
    _, kept = _verify(path, pubkey, insecure, progress, keep=frozenset({SPEC_ENTRY}))
    _check_spec(kept.get(SPEC_ENTRY), manifest)
    skipped = [step for step, key in (("model", "model_placed"), ("images", "images_loaded")) if journal.done(key)]
    if not model_done and not journal.data["model_files"]:
        shutil.rmtree(places.staging, ignore_errors=True)  # left by an earlier run that recorded nothing: not trusted
    _copy_pass(path, pubkey, insecure, manifest, places, journal, progress, say)
    delta.stage(
        sources,
        blob_dir=places.images,
        model_staging=places.staging,
        copied=lambda p: journal.add("model_files", p),
        progress=progress,
        say=say,
    )
    if manifest.images and not journal.done("images_loaded"):
        say(f"loading {len(manifest.images)} image(s) into Docker")
        _load_images(manifest, places.images)
        journal.mark("images_loaded")
        shutil.rmtree(places.images, ignore_errors=True)
        say("loaded " + ", ".join(t for i in manifest.images for t in i.tags))
    if not model_done:
        _place(places.staging, places.model)
        journal.mark("model_placed")
        say(f"model in place at {places.model}")
    _sweep(places)
    _atomic_write(places.spec, kept[SPEC_ENTRY])
    stack_dir = render(places.spec)
    journal.mark("stack", str(stack_dir))
    journal.mark("completed_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    say(f"stack rendered in {stack_dir}")
    tags = [t for i in manifest.images for t in i.tags]
    return Installed(str(target), str(places.model), str(places.spec), str(stack_dir), tags, skipped, trust)


def _copy_pass(
    path: Path,
    pubkey: Path | None,
    insecure: bool,
    manifest: Manifest,
    places: Places,
    journal: Journal,
    progress: Progress,
    say: Say,
) -> None:
    """Read the bundle again: stage its blobs (verified) and copy its model files into the staging folder."""
    by_file = {blob_file(b.digest): b for b in manifest.blobs if b.carried}
    reader, _ = _open_trusted(path, pubkey, insecure)
    try:
        for entry, chunks in reader.entries():
            if entry.kind == "image" and not journal.done("images_loaded"):
                say(f"staging {entry.path}")
                stage_blob(chunks, by_file[entry.path], places.images, entry.path, progress)
            elif (
                entry.kind == "model"
                and not journal.done("model_placed")
                and entry.path not in journal.data["model_files"]
            ):
                rel = entry.path.split("/", 2)[2]
                say(f"copying model file {rel}")
                stage_file(chunks, within(places.staging, rel, entry.path), progress, entry.path, entry.size)
                journal.add("model_files", entry.path)
            else:
                drain(chunks)
    finally:
        reader.close()


def _load_images(manifest: Manifest, blob_dir: Path) -> None:
    """`docker load` the images from blobs staged (and verified) in `blob_dir`."""
    sizes = {b.digest: b.size for b in manifest.blobs}
    for digest in sizes:
        if not (blob_dir / digest.removeprefix("sha256:")).is_file():
            raise BundleError(f"blob {digest[:19]} was not staged: run install again")

    def open_blob(digest: str) -> IO[bytes]:
        return (blob_dir / digest.removeprefix("sha256:")).open("rb", buffering=CHUNK)

    images.load(images.archive_stream(manifest.images, sizes, open_blob))


def _sweep(places: Places) -> None:
    """Remove what a run killed mid-rename left at the target: a half-written stack, a replaced model."""
    stale = [*places.target.glob(f".{places.stack.name}.new-*"), *places.target.glob(f".{places.stack.name}.old-*")]
    stale += places.model.parent.glob(f".{places.model.name}.old-*")
    for path in stale:
        if path.is_dir() and not path.is_symlink() and is_under(places.target, path):
            shutil.rmtree(path)


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


@dataclass(frozen=True)
class Exported:
    path: str
    images: list[str]
    bytes: int
    trust: str


def export_images(
    path: Path,
    out: Path,
    pubkey: Path | None,
    insecure: bool = False,
    progress: Progress | None = None,
    say: Say | None = None,
    *,
    base: Path | None = None,
) -> Exported:
    """Write the bundle's images as one archive for `ctr -n k8s.io images import` (or `docker load`) elsewhere.

    For Kubernetes nodes, whose container runtime is containerd: every blob is verified before
    it goes into the archive, which appears under its name only once complete. A delta takes
    the blobs it does not carry from `base` (the base bundle).
    """
    progress = progress or (lambda item, done, total: None)
    say = say or (lambda text: None)
    reader, trust = _open_trusted(path, pubkey, insecure)
    reader.close()
    manifest = reader.manifest
    if not manifest.images:
        raise BundleError("the bundle carries no images")
    if out.exists():
        raise InputError(f"{out} already exists", "choose a new name; archives are never overwritten")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory")
    sources = delta.find(
        manifest,
        target=out.parent,
        base_done=False,
        need_blobs=True,
        files_done={f.path for f in manifest.from_base},
        base_bundle=base,
    )
    work = out.with_name(f".{out.name}.blobs")
    tmp = out.with_name(f".{out.name}.part")
    by_file = {blob_file(b.digest): b for b in manifest.blobs if b.carried}
    try:
        reader, _ = _open_trusted(path, pubkey, insecure)
        try:
            for entry, chunks in reader.entries():
                if entry.kind == "image":
                    say(f"checking {entry.path}")
                    stage_blob(chunks, by_file[entry.path], work, entry.path, progress)
                else:
                    drain(chunks)
        finally:
            reader.close()
        delta.stage(sources, blob_dir=work, model_staging=work, copied=lambda p: None, progress=progress, say=say)
        sizes = {b.digest: b.size for b in manifest.blobs}
        with tmp.open("wb", buffering=CHUNK) as f:
            for chunk in images.archive_stream(
                manifest.images, sizes, lambda d: (work / d.removeprefix("sha256:")).open("rb", buffering=CHUNK)
            ):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    tags = [t for i in manifest.images for t in i.tags]
    return Exported(str(out), tags, out.stat().st_size, trust)
