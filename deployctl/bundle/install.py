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
from deployctl.bundle.format import BundleError, Manifest, VerificationFailed, blob_file
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.fsio import (
    atomic_writer,
    ensure_dir,
    free_bytes,
    open_regular,
    read_bounded,
    remove_temporaries,
    write_atomic,
)
from deployctl.safepath import PATH_MAX, check_dir, is_under, within
from deployctl.terminal import shown

Progress = Callable[[str, int, int | None], None]
Say = Callable[[str], None]
JOURNAL_DIR = ".deployctl-install"
INSTALLED = "installed.json"  # in JOURNAL_DIR: the revision the site runs (anti-rollback)
SPEC_ENTRY = "spec/deployctl.yaml"


@dataclass(frozen=True)
class Verified:
    name: str
    manifest_sha256: str
    trust: str
    entries: int
    bytes: int
    revision: int
    created_at: str


def _open_trusted(path: Path, pubkey: Path | None, insecure: bool) -> tuple[Reader, str]:
    reader = open_bundle(path)
    try:
        trust = signing.check(reader.manifest_raw, reader.signature_raw, pubkey, insecure)
        if reader.index is not None and not insecure:
            _check_index(reader, pubkey)
    except BaseException:
        reader.close()
        raise
    return reader, trust


def _check_index(reader: Reader, pubkey: Path | None) -> None:
    """A split bundle's parts index is signed too, and names the manifest the parts carry."""
    index = reader.index
    assert index is not None
    if index.signature is None or index.manifest_sha256 is None:
        raise VerificationFailed(
            "the parts index is not signed, though the manifest is", "make the bundle again with --split and --sign"
        )
    signing.check(index.signed_bytes, index.signature, pubkey, False, signed="the parts index", what="its signature")
    if index.manifest_sha256 != hashlib.sha256(reader.manifest_raw).hexdigest():
        raise VerificationFailed("the parts index belongs to another bundle: its manifest sha256 differs")


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
    m = reader.manifest
    manifest_sha = hashlib.sha256(reader.manifest_raw).hexdigest()
    verified = Verified(m.name, manifest_sha, trust, len(m.entries), done, m.revision, m.created_at)
    return verified, kept


# The journal and the installed record are a few KB; a larger one is not ours.
JOURNAL_MAX = 4 * 1024 * 1024


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """Give a small JSON object written by an earlier install ({} when there is none, or it is damaged)."""
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(read_bounded(path, JOURNAL_MAX, what))
    except (ValueError, RecursionError):
        return {}  # a record cut short by a power cut: the steps it would skip are done again
    except InputError as exc:
        raise EnvironmentProblem(exc.message, f"move {path} aside") from None
    return data if isinstance(data, dict) else {}


@dataclass
class Journal:
    """What an install of one bundle has finished, kept in TARGET/.deployctl-install/<manifest>.json."""

    path: Path
    root: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, journal_dir: Path, manifest_sha: str, root: Path) -> Journal:
        path = journal_dir / f"{manifest_sha[:24]}.json"
        data = _read_json(path, "install journal")
        if not isinstance(data.get("model_files"), list):
            data["model_files"] = []
        return cls(path, root, data)

    def done(self, key: str) -> bool:
        return bool(self.data.get(key))

    def mark(self, key: str, value: Any = True) -> None:
        self.data[key] = value
        self.save()

    def add(self, key: str, item: str) -> None:
        self.data[key].append(item)
        self.save()

    def save(self) -> None:
        ensure_dir(self.path.parent, within=self.root)
        write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True).encode(), within=self.root)


@dataclass(frozen=True)
class Installed:
    target: str
    model_dir: str
    spec: str
    stack_dir: str
    images: list[str]
    skipped_steps: list[str]
    trust: str
    revision: int
    replaced_revision: int | None  # what was installed before (None: nothing)
    downgrade: bool


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

    @property
    def record(self) -> Path:
        """Where the site keeps which bundle revision is installed (anti-rollback)."""
        return self.journal_dir / INSTALLED


def _places(manifest: Manifest, target: Path, manifest_sha: str) -> Places:
    """Give where the install writes, or an error (one line) before anything is written.

    The bundle's own fault (a path leading outside) is a BundleError (exit 2); a site that cannot
    take the install (a file where a folder belongs, a read-only or immutable target, a target too
    deep for the bundle's paths) is an EnvironmentProblem (exit 3).
    """
    if manifest.model_name is None:
        raise BundleError("the bundle carries no model")
    check_dir(target, "--target")
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
    _check_site_paths(places, manifest)
    return places


def _check_site_paths(places: Places, manifest: Manifest) -> None:
    """Refuse, before any write, a site where a file or folder of the wrong kind is in the way, or nothing can be written."""
    root = places.target
    folders = (root, root / "models", places.model, places.journal_dir, places.images, places.staging, places.stack)
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise EnvironmentProblem(
                f"{folder} is a file, and the install needs a folder there", "move it aside and run install again"
            )
    if places.spec.is_dir():
        raise EnvironmentProblem(
            f"{places.spec} is a folder, and the install writes the spec there", "move it aside and run install again"
        )
    existing = root
    while not existing.exists():
        existing = existing.parent
    for folder in (existing, *(f for f in folders[1:] if f.is_dir())):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise EnvironmentProblem(
                f"cannot write in {folder} (read-only, immutable, or not yours)",
                "run install as a user who may write there (sudo), or choose --target elsewhere",
            )
    longest = max((len(e.path.encode()) for e in manifest.entries), default=0)
    deepest = len(os.fsencode(places.staging)) + longest + 32  # + the temporary name's suffix
    if deepest >= PATH_MAX:
        raise EnvironmentProblem(
            f"--target {shown(root, 80)} is too deep for the bundle's paths: its longest file would be {deepest:,} bytes "
            f"long (Linux allows {PATH_MAX - 1:,})",
            "choose a --target with a shorter path",
        )


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


def _check_revision(manifest: Manifest, manifest_sha: str, installed: dict[str, Any], *, allow_downgrade: bool) -> bool:
    """Refuse an older or equal revision than the one installed (unless allowed); give whether it is a downgrade.

    The same bundle again (same manifest sha256: an interrupted install resumed, or a finished one
    run again) is no downgrade. A delta is always newer than its base (`bundle create` makes sure).
    """
    if not installed or installed.get("manifest_sha256") == manifest_sha:
        return False
    have = installed.get("revision")
    if not isinstance(have, int) or manifest.revision > have:
        return False
    if allow_downgrade:
        return True
    offered = f"revision {manifest.revision} (created {manifest.created_at})"
    current = (
        f"revision {have} (created {shown(installed.get('created_at'), 40)}, {shown(installed.get('name'), 40)!r})"
    )
    raise BundleError(
        f"refusing a downgrade: this bundle is {offered}, not newer than the installed {current}",
        "install a newer bundle, or pass --allow-downgrade to go back on purpose",
    )


def _preflight(manifest: Manifest, places: Places, journal: Journal, sources: delta.Sources) -> None:
    from deployctl import docker

    info = docker.info()  # raises EnvironmentProblem when the engine is not there
    done = set(journal.data["model_files"])
    model_left = sum(e.size for e in manifest.entries if e.kind == "model" and e.path not in done)
    model_left += sum(f.size for f in manifest.model_from_base() if f.path not in done)
    # Declared sizes, not what a blob turns out to be: decompression stops at the declaration.
    present = sources.present | set(sources.unchanged)
    images_left = 0 if journal.done("images_loaded") else sum(b.size for b in manifest.blobs if b.digest not in present)
    # Verified blobs wait at the target for `docker load`, which unpacks them again at Docker's root.
    needed = model_left + images_left + 64 * 1024 * 1024
    free = free_bytes(places.target)
    if free < needed:
        raise EnvironmentProblem(
            f"not enough disk at {places.target}: {needed / 2**30:.1f} GiB needed (model and images), {free / 2**30:.1f} GiB free",
            "free space there or choose --target elsewhere",
        )
    root = Path(info.root_dir)
    if images_left and root.exists() and free_bytes(root) < images_left:
        raise EnvironmentProblem(
            f"not enough disk for the images at {root}: {images_left / 2**30:.1f} GiB needed, {free_bytes(root) / 2**30:.1f} GiB free"
        )


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
    check_site: Callable[[bytes, Manifest], None] = lambda spec, manifest: None,
    base: Path | None = None,
    allow_downgrade: bool = False,
) -> Installed:
    """Verify the bundle, then load its images, place its model and render its stack under `target`.

    `check_site(spec_bytes, manifest)` checks what rendering will need on this host (the driver or
    --simulate, the key variable, the plan fitting its GPUs); `render` renders the stack of the
    spec file it is given and gives the stack's directory.

    Every check (paths, revision, Docker, disk, the delta's pieces, every byte, the spec, the site)
    runs before the first write. A delta bundle takes what it does not carry from the base
    installed at `target` (or from `base`, the base bundle), checking those bytes against its own
    manifest. Run again after an interruption: finished steps are skipped, half-copied files are
    not trusted, and the bundle is verified again (it may have changed in between).
    """
    progress = progress or (lambda item, done, total: None)
    say = say or (lambda text: None)
    reader, trust = _open_trusted(path, pubkey, insecure)
    reader.close()
    manifest = reader.manifest
    manifest_sha = hashlib.sha256(reader.manifest_raw).hexdigest()
    places = _places(manifest, target.absolute(), manifest_sha)
    installed = _read_json(places.record, "installed record")
    downgrade = _check_revision(manifest, manifest_sha, installed, allow_downgrade=allow_downgrade)
    journal = Journal.load(places.journal_dir, manifest_sha, places.target)
    model_done = journal.done("model_placed")
    base_done = manifest.base is not None and (
        Journal.load(places.journal_dir, manifest.base.manifest_sha256, places.target).done("completed_at")
    )
    sources = delta.find(
        manifest,
        target=places.target,
        base_done=base_done,
        need_blobs=not journal.done("images_loaded"),
        files_done={f.path for f in manifest.model_from_base()} if model_done else set(journal.data["model_files"]),
        base_bundle=base,
    )
    _preflight(manifest, places, journal, sources)
    say("verifying every file before changing anything")
    _, kept = _verify(path, pubkey, insecure, progress, keep=frozenset({SPEC_ENTRY}))
    _check_spec(kept.get(SPEC_ENTRY), manifest)
    check_site(kept[SPEC_ENTRY], manifest)
    # -- every check passed: the first write is below --
    if downgrade:
        say(
            f"installing revision {manifest.revision} over the newer revision {installed.get('revision')} (--allow-downgrade)"
        )
    places.target.mkdir(parents=True, exist_ok=True)  # the operator's path, links and all
    for folder in (places.journal_dir, places.model.parent):
        ensure_dir(folder, within=places.target)
    journal.save()
    skipped = [step for step, key in (("model", "model_placed"), ("images", "images_loaded")) if journal.done(key)]
    if not model_done and not journal.data["model_files"]:
        shutil.rmtree(places.staging, ignore_errors=True)  # left by an earlier run that recorded nothing: not trusted
    if not model_done:
        ensure_dir(places.staging, within=places.target)
    # What a run killed mid-write (SIGKILL) left under temporary names: never trusted, never kept.
    for folder in (places.staging, places.images, places.journal_dir):
        remove_temporaries(folder)
    remove_temporaries(places.target, recursive=False)
    _copy_pass(path, pubkey, insecure, manifest, places, journal, progress, say)
    delta.stage(
        sources,
        delta.Staging(
            root=places.target,
            blob_dir=places.images,
            model_staging=places.staging,
            copied=lambda p: journal.add("model_files", p),
            progress=progress,
            say=say,
        ),
    )
    if manifest.images and not journal.done("images_loaded"):
        reused = f"; {len(sources.present)} layer(s) the engine holds are taken by digest" if sources.present else ""
        say(f"loading {len(manifest.images)} image(s) into Docker{reused}")
        _load_images(manifest, places.images, sources)
        journal.mark("images_loaded")
        shutil.rmtree(places.images, ignore_errors=True)
        say("loaded " + ", ".join(t for i in manifest.images for t in i.tags))
    if not model_done:
        _place(places.staging, places.model)
        journal.mark("model_placed")
        say(f"model in place at {places.model}")
    _sweep(places)
    write_atomic(places.spec, kept[SPEC_ENTRY], within=places.target)
    stack_dir = render(places.spec)
    journal.mark("stack", str(stack_dir))
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    journal.mark("completed_at", finished)
    record = {
        "revision": manifest.revision,
        "created_at": manifest.created_at,
        "name": manifest.name,
        "manifest_sha256": manifest_sha,
        "installed_at": finished,
    }
    write_atomic(places.record, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), within=places.target)
    say(f"stack rendered in {stack_dir}")
    tags = [t for i in manifest.images for t in i.tags]
    before = installed.get("revision") if isinstance(installed.get("revision"), int) else None
    return Installed(
        str(target), str(places.model), str(places.spec), str(stack_dir), tags, skipped, trust,
        manifest.revision, before, downgrade,
    )  # fmt: skip


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
                stage_blob(chunks, by_file[entry.path], places.images, entry.path, progress, within=places.target)
            elif (
                entry.kind == "model"
                and not journal.done("model_placed")
                and entry.path not in journal.data["model_files"]
            ):
                rel = entry.path.split("/", 2)[2]
                say(f"copying model file {rel}")
                dest = within(places.staging, rel, entry.path)
                stage_file(chunks, dest, progress, entry.path, entry.size, within=places.target)
                journal.add("model_files", entry.path)
            else:
                drain(chunks)
    finally:
        reader.close()


def _load_images(manifest: Manifest, blob_dir: Path, sources: delta.Sources) -> None:
    """`docker load` the images from blobs staged (and verified) in `blob_dir`; name the unchanged ones again.

    Layers whose chain the site's engine holds (`sources.present`) stay out of the archive, and an
    image that did not change (`sources.unchanged`) is only tagged: nothing is read back from Docker.
    """
    sizes = {b.digest: b.size for b in manifest.blobs}
    to_load = [i for i in manifest.images if i.config not in sources.unchanged]
    for image in to_load:
        for digest in image.blobs:
            if digest not in sources.present and not (blob_dir / digest.removeprefix("sha256:")).is_file():
                raise BundleError(f"blob {digest[:19]} was not staged: run install again")

    def open_blob(digest: str) -> IO[bytes]:
        return open_regular(blob_dir / digest.removeprefix("sha256:"), "staged blob", follow=False)

    if to_load:
        images.load(images.archive_stream(to_load, sizes, open_blob, present=sources.present))
    for image_id, tags in sources.unchanged.items():
        images.tag(image_id, tags)


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
    if out.exists() or out.is_symlink():
        raise InputError(f"{out} already exists", "choose a new name; archives are never overwritten")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a directory")
    sources = delta.find(
        manifest,
        target=out.parent,
        base_done=False,
        need_blobs=True,
        files_done={f.path for f in manifest.model_from_base()},
        base_bundle=base,
    )
    root = out.parent.absolute()
    work = root / f".{out.name}.blobs"
    by_file = {blob_file(b.digest): b for b in manifest.blobs if b.carried}
    try:
        reader, _ = _open_trusted(path, pubkey, insecure)
        try:
            for entry, chunks in reader.entries():
                if entry.kind == "image":
                    say(f"checking {entry.path}")
                    stage_blob(chunks, by_file[entry.path], work, entry.path, progress, within=root)
                else:
                    drain(chunks)
        finally:
            reader.close()
        delta.stage(
            sources,
            delta.Staging(
                root=root, blob_dir=work, model_staging=work, copied=lambda p: None, progress=progress, say=say
            ),
        )
        sizes = {b.digest: b.size for b in manifest.blobs}

        def open_blob(digest: str) -> IO[bytes]:
            return open_regular(work / digest.removeprefix("sha256:"), "staged blob", follow=False)

        with atomic_writer(root / out.name, within=root) as f:
            for chunk in images.archive_stream(manifest.images, sizes, open_blob):
                f.write(chunk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tags = [t for i in manifest.images for t in i.tags]
    return Exported(str(out), tags, out.stat().st_size, trust)
