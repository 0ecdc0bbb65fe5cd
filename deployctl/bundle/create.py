"""`bundle create`: images (docker save | zstd), the model, the stack, the spec and wheels, then the manifest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from deployctl import __version__
from deployctl.bundle import images
from deployctl.bundle.archive import read_manifest
from deployctl.bundle.blobs import BlobStore, Syncer
from deployctl.bundle.format import (
    CHUNK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PARTS,
    REVISION_MAX,
    SIGNATURE,
    Base,
    BaseFile,
    Entry,
    ImageEntry,
    Manifest,
    dump_manifest,
)
from deployctl.errors import InputError
from deployctl.fsio import atomic_writer, ensure_dir, open_regular, write_atomic
from deployctl.plan import Plan
from deployctl.safepath import check_name, check_relative
from deployctl.spec import DeploymentSpec

Progress = Callable[[str, int, int | None], None]  # (item, bytes done, bytes total or None)


@dataclass(frozen=True)
class Created:
    path: Path
    manifest_sha256: str
    size: int
    entries: int
    signed: bool
    parts: list[str]
    revision: int


def _add_image(store: BlobStore, name: str) -> ImageEntry:
    """Store an image's config and layers as blobs (each once; none the base has) and give its entry."""
    attrs = images.inspect(name)
    repo_tags = list(attrs.get("RepoTags") or [])
    wanted = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"  # docker load needs name:tag
    tags = [wanted] if wanted in repo_tags else repo_tags[:1]
    if not tags:
        raise InputError(f"image {name} has no name:tag to be loaded back under", f"docker tag {name} NAME:TAG")
    config = str(attrs["Id"])
    layers = list((attrs.get("RootFS") or {}).get("Layers") or [])
    if layers and all(d in store.skip or d in store.blobs for d in [config, *layers]):
        # The base (or an image already stored) has every blob: nothing to read.
        for d in [config, *layers]:
            store.known(d)
        return ImageEntry(tags=tags, config=config, layers=layers)
    saved = images.split_saved(images.save(name), store.put, f"image {name}")
    if saved.config in store.small:
        images.check_diff_ids(saved, store.small[saved.config], name)
    return ImageEntry(tags=tags, config=saved.config, layers=saved.layers)


def _copy(staging: Path, src: Path, rel: str, *, label: str, progress: Progress, syncer: Syncer) -> tuple[int, str]:
    dest = staging / rel
    ensure_dir(dest.parent, within=staging)
    total = src.stat().st_size
    h = hashlib.sha256()
    n = 0
    with open_regular(src, "model file") as fin, atomic_writer(dest, within=staging, fsync=False) as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            h.update(chunk)
            n += len(chunk)
            progress(label, n, total)
        syncer.later(fout)
    return n, h.hexdigest()


def _write(staging: Path, rel: str, data: bytes, kind: str) -> Entry:
    path = staging / rel
    ensure_dir(path.parent, within=staging)
    write_atomic(path, data, within=staging)
    return Entry(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest(), kind=kind)  # type: ignore[arg-type]


def _model_entries(
    staging: Path, model_dir: Path, name: str, progress: Progress, base: BaseBundle | None, syncer: Syncer
) -> tuple[list[Entry], list[BaseFile]]:
    """Copy the model's files (hashing them in the same read); a file the base has (by sha256) is only listed."""
    out: list[Entry] = []
    from_base: list[BaseFile] = []
    for src in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel_in = src.relative_to(model_dir).as_posix()
        if rel_in.startswith(".") or "/." in rel_in:
            continue  # caches and hidden files (.cache/huggingface) stay behind
        rel = f"model/{name}/{rel_in}"
        check_relative(rel_in, f"model file {src}")  # a name the site would refuse is refused here
        if base is not None and base.model_files:
            sha, size = _sha_file(src)
            if sha in base.model_files:
                from_base.append(BaseFile(path=rel, size=size, sha256=sha, base_path=base.model_files[sha]))
                continue
        size, sha = _copy(staging, src, rel, label=f"model {rel_in}", progress=progress, syncer=syncer)
        out.append(Entry(path=rel, size=size, sha256=sha, kind="model"))
    if not out and not from_base:
        raise InputError(f"{model_dir} holds no files to bundle")
    return out, from_base


@dataclass(frozen=True)
class BaseBundle:
    """What a delta leaves out: the base's blobs (digest -> size), model files and wheels (sha256 -> path)."""

    manifest: Manifest
    sha256: str
    blobs: dict[str, int]
    model_files: dict[str, str]
    wheels: dict[str, str]


def load_base(path: Path) -> BaseBundle:
    """Read the base of a delta: a bundle (folder, .tar, parts) or its manifest.json alone."""
    raw, manifest = read_manifest(path)
    files = {e.sha256: e.path for e in manifest.entries if e.kind == "model"}
    wheels = {e.sha256: e.path for e in manifest.entries if e.kind == "wheel"}
    for f in manifest.from_base:  # a delta as base: the site has those files at their own path
        (wheels if f.path.startswith("wheels/") else files).setdefault(f.sha256, f.path)
    blobs = {b.digest: b.size for b in manifest.blobs}
    return BaseBundle(manifest, hashlib.sha256(raw).hexdigest(), blobs, files, wheels)


def default_revision(base: BaseBundle | None = None) -> int:
    """Give the revision a bundle gets when none is asked for: the creation time as YYYYMMDDHHMMSSmmm (UTC).

    A delta made in the same millisecond as its base still comes after it.
    """
    ns = time.time_ns()
    now = int(time.strftime("%Y%m%d%H%M%S", time.gmtime(ns // 10**9))) * 1000 + (ns // 10**6) % 1000
    return max(now, base.manifest.revision + 1) if base is not None else now


def _wheel_entries(
    staging: Path, source: str, base: BaseBundle | None, *, say: Callable[[str], None] | None
) -> tuple[list[Entry], list[BaseFile]]:
    """Collect the wheels; in a delta, a wheel the base has (same sha256) is only listed, not carried."""
    from deployctl.bundle import wheels as wheels_mod

    carried: list[Entry] = []
    from_base: list[BaseFile] = []
    for w in wheels_mod.collect(staging / "wheels", source, say=say):
        sha, size = _sha_file(w)
        rel = f"wheels/{w.name}"
        if base is not None and sha in base.wheels:
            w.unlink()
            from_base.append(BaseFile(path=rel, size=size, sha256=sha, base_path=base.wheels[sha]))
        else:
            carried.append(Entry(path=rel, size=size, sha256=sha, kind="wheel"))
    return carried, from_base


def bundled_spec(spec: DeploymentSpec, model_name: str) -> bytes:
    """Give the spec as the site will use it: model under models/, stack under stack/, no secrets."""
    data = spec.model_dump(mode="json", exclude_none=True)
    data["model"] = {**data["model"], "path": f"models/{model_name}"}
    data["model"].pop("preset", None)
    data["stack_dir"] = "stack"
    data["serve"].pop("api_key", None)
    data["serve"].pop("api_key_file", None)  # a file on this host; the site names its own
    header = f"# From a deployctl {__version__} bundle. Paths are relative to this file.\n"
    return (header + yaml.safe_dump(data, sort_keys=False)).encode()


KEY_PLACEHOLDER = "set-DEPLOYCTL_API_KEY-in-.env"  # rendered in place of the key, then cut from env.template


def _stack_entries(staging: Path, plan: Plan, simulate: bool, target: str) -> list[Entry]:
    """The plan's stack files (stack/), and with target helm its packaged chart (stack/chart/NAME-VERSION.tgz),
    both rendered from one context."""
    from deployctl import targets
    from deployctl.targets.helm import package

    key = KEY_PLACEHOLDER if plan.api_key else None
    context = targets.context(plan, targets.RenderOptions(simulate=simulate, api_key=key))
    out = []
    for name, data in targets.get("compose").render(context).items():
        if name == ".env":
            name, data = "env.template", data.replace(key.encode(), b"") if key else data
        out.append(_write(staging, f"stack/{name}", data, "stack"))
    if target == "helm":
        chart_name, chart = package(targets.get("helm").render(context))
        out.append(_write(staging, f"stack/chart/{chart_name}", chart, "stack"))
    return out


def _tar_members(staging: Path, manifest_entries: list[Entry], signed: bool) -> Iterator[tuple[str, Path]]:
    yield MANIFEST, staging / MANIFEST
    if signed:
        yield SIGNATURE, staging / SIGNATURE
    for e in manifest_entries:
        yield e.path, staging / e.path


class SplitWriter:
    """Write one stream as parts of at most `size` bytes (each written whole or not at all), recording each sha256."""

    def __init__(self, base: Path, size: int) -> None:
        self.base, self.size = base, size
        self.parts: list[dict[str, Any]] = []
        self.f: IO[bytes] | None = None
        self.part: contextlib.ExitStack | None = None
        self.left = 0

    def _roll(self) -> None:
        self._close_part()
        name = f"{self.base.name}.part{len(self.parts):03d}"
        self.part = contextlib.ExitStack()
        self.f = self.part.enter_context(atomic_writer(self.base.parent / name))
        self.parts.append({"name": name, "size": 0, "h": hashlib.sha256()})
        self.left = self.size

    def _close_part(self) -> None:
        if self.part is not None:
            self.part.close()  # fsync and rename into place
            self.part, self.f = None, None

    def abandon(self) -> None:
        """Remove the part being written (the ones done are removed by the caller)."""
        if self.part is not None:
            self.part.__exit__(RuntimeError, RuntimeError("abandoned"), None)
            self.part, self.f = None, None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self.f is None or self.left == 0:
                self._roll()
            assert self.f is not None
            n = min(self.left, len(view))
            self.f.write(view[:n])
            self.parts[-1]["h"].update(view[:n])
            self.parts[-1]["size"] += n
            self.left -= n
            view = view[n:]
        return len(data)

    def close(self) -> list[dict[str, Any]]:
        self._close_part()
        return [{"name": p["name"], "size": p["size"], "sha256": p["h"].hexdigest()} for p in self.parts]


def _write_tar(staging: Path, out: IO[bytes], entries: list[Entry], signed: bool) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for name, path in _tar_members(staging, entries, signed):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb", buffering=CHUNK) as f:
                tar.addfile(info, f)


def _write_parts(
    staging: Path, out: Path, entries: list[Entry], *, split: int, sign_key: Path | None, manifest_sha256: str
) -> list[str]:
    """Write the tar as parts and their index (its part list and the manifest's sha256 signed too); give the names."""
    from deployctl.bundle.archive import index_bytes

    writer = SplitWriter(out, split)
    try:
        _write_tar(staging, writer, entries, sign_key is not None)  # type: ignore[arg-type]
    except BaseException:
        writer.abandon()
        raise
    listed = writer.close()
    index: dict[str, Any] = {"manifest_sha256": manifest_sha256, "parts": listed}
    if sign_key is not None:
        from deployctl.bundle.signing import sign

        index["signature"] = json.loads(sign(index_bytes(listed, manifest_sha256), sign_key))
    write_atomic(out.parent / f"{out.name}.{PARTS}", (json.dumps(index, indent=2) + "\n").encode())
    return [p["name"] for p in listed]


def create(
    spec: DeploymentSpec,
    plan: Plan,
    out: Path,
    images: list[str],
    sign_key: Path | None = None,
    wheels: str = "auto",
    simulate: bool = False,
    as_tar: bool = False,
    split: int | None = None,
    progress: Progress | None = None,
    *,
    base: Path | None = None,
    target: str = "compose",
    revision: int | None = None,
) -> Created:
    """Write the bundle at `out` (a folder, `out` as a .tar, or its parts); nothing is left half-written.

    With `base` (an earlier bundle or its manifest.json), a delta: every blob, model file and wheel
    the base has is left out, and the base's manifest sha256 is recorded. `revision` (default: the
    creation time as YYYYMMDDHHMMSSmmm) must be above the base's: sites refuse an older or equal one.
    """
    progress = progress or (lambda item, done, total: None)
    if spec.model.path is None:
        raise InputError("a bundle carries the model's weights: set model.path (or --model DIR)")
    index = out.parent / f"{out.name}.{PARTS}"
    for path in (out, index) if split else (out,):
        if path.exists() or path.is_symlink():
            raise InputError(f"{path} already exists", "choose a new name; bundles are never overwritten")
    if sign_key is not None:
        from deployctl.bundle.signing import public_of

        public_of(sign_key)  # a bad key is refused before minutes of copying
    model_name = check_name(spec.model.path.name, "the model's folder name")
    old = load_base(base) if base is not None else None
    revision = revision if revision is not None else default_revision(old)
    if not 1 <= revision <= REVISION_MAX:
        raise InputError(f"--revision {revision}: must be between 1 and {REVISION_MAX:,}")
    if old is not None and revision <= old.manifest.revision:
        raise InputError(
            f"--revision {revision} is not above the base's revision {old.manifest.revision}",
            "a delta is newer than its base: pass a higher --revision",
        )
    staging = out.with_name(f".{out.name}.partial")
    if staging.is_symlink():
        staging.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)  # the operator's folder, links and all
    ensure_dir(staging, within=out.parent)
    parts: list[str] = []
    try:
        syncer = Syncer()
        store = BlobStore.open(staging, old.blobs if old else {}, progress, syncer)
        # `docker save` is paced by the engine (it waits on dockerd most of the time), so the
        # model is copied in a second thread meanwhile; the plain tools do one after the other.
        stop = threading.Event()

        def model_progress(item: str, done: int, total: int | None) -> None:
            if stop.is_set():
                raise InputError("bundle create stopped")
            progress(item, done, total)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as pool:
            model_job = pool.submit(_model_entries, staging, spec.model.path, model_name, model_progress, old, syncer)
            try:
                image_entries = [_add_image(store, name) for name in images]
            except BaseException:
                stop.set()  # the copy stops at its next chunk; the staging folder goes below
                raise
            model_entries, from_base = model_job.result()
        syncer.wait()
        entries: list[Entry] = [*store.entries, *model_entries]
        entries += _stack_entries(staging, plan, simulate, target)
        entries.append(_write(staging, "spec/deployctl.yaml", bundled_spec(spec, model_name), "spec"))
        if wheels != "none":
            carried, same = _wheel_entries(staging, wheels, old, say=getattr(progress, "say", None))
            entries += carried
            from_base += same
        manifest = Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            revision=revision,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            deployctl_version=__version__,
            name=spec.name,
            plan=plan.model_dump(mode="json"),
            model_name=model_name,
            images=image_entries,
            blobs=list(store.blobs.values()),
            entries=entries,
            base=Base(manifest_sha256=old.sha256, name=old.manifest.name, model_name=old.manifest.model_name)
            if old
            else None,
            from_base=from_base,
        )
        raw = dump_manifest(manifest)
        write_atomic(staging / MANIFEST, raw, within=staging)
        if sign_key is not None:
            from deployctl.bundle.signing import sign

            write_atomic(staging / SIGNATURE, sign(raw, sign_key), within=staging)
        if split:
            parts = _write_parts(
                staging, out, entries, split=split, sign_key=sign_key, manifest_sha256=hashlib.sha256(raw).hexdigest()
            )
            shutil.rmtree(staging)
        elif as_tar:
            with atomic_writer(out) as f:
                _write_tar(staging, f, entries, sign_key is not None)
            shutil.rmtree(staging)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for stray in out.parent.glob(f"{out.name}.part*"):
            stray.unlink()
        raise
    size = sum(e.size for e in entries) + len(raw)
    return Created(out, hashlib.sha256(raw).hexdigest(), size, len(entries), sign_key is not None, parts, revision)


def _sha_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n
