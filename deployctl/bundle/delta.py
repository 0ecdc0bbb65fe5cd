"""Where a delta bundle's missing pieces come from: the base bundle (given with --base) or the site.

A delta lists, without carrying them, the image blobs and model files its base has. Before
anything is written, `find` checks that every one of them can be had, and names what cannot.
`stage` then copies each into the install's staging areas, checking every byte against the
delta's (signed) manifest on the way: a base that changed since is refused as any bundle is.

At the site, image layers are not copied at all: the engine's metadata says which layer chains it
holds (by digest), and `docker load` takes those from its own store; only an image that did not
change is named again (`docker tag`). No image is ever saved or read.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deployctl.bundle import images
from deployctl.bundle.archive import Chunks, checked, drain, file_chunks, open_bundle
from deployctl.bundle.blobs import stage_blob, stage_file
from deployctl.bundle.format import BaseFile, Blob, BundleError, Entry, Manifest, blob_file
from deployctl.safepath import within

Progress = Callable[[str, int, int | None], None]
Say = Callable[[str], None]


@dataclass
class Sources:
    """What the delta still needs, and where each piece will come from."""

    blobs: dict[str, Blob] = field(default_factory=dict)  # digest -> blob, not carried, not yet loaded
    files: list[BaseFile] = field(default_factory=list)  # model files not carried, not yet copied
    bundle: Path | None = None  # the base bundle given with --base
    present: frozenset[str] = frozenset()  # layers whose chain the site's engine holds: left out of the load
    unchanged: dict[str, list[str]] = field(default_factory=dict)  # image id the site holds -> tags to give it
    site_model: Path | None = None  # the base's model folder at the site

    def __bool__(self) -> bool:
        return bool(self.blobs or self.files)


def _short(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def find(
    manifest: Manifest,
    *,
    target: Path,
    base_done: bool,
    need_blobs: bool,
    files_done: set[str],
    base_bundle: Path | None,
) -> Sources:
    """Give where each missing piece comes from, or a BundleError naming what is missing (nothing written)."""
    blobs = {b.digest: b for b in manifest.blobs if not b.carried} if need_blobs else {}
    files = [f for f in manifest.model_from_base() if f.path not in files_done]
    sources = Sources(blobs, files)
    if not sources or manifest.base is None:
        return sources
    base = manifest.base
    what = f"base {base.name!r} (manifest {base.manifest_sha256[:12]})"
    if base_bundle is not None:
        sources.bundle = base_bundle
        reader = open_bundle(base_bundle)
        reader.close()
        if hashlib.sha256(reader.manifest_raw).hexdigest() != base.manifest_sha256:
            raise BundleError(f"--base {base_bundle} is not the {what} this delta was made from")
        carried = {b.digest for b in reader.manifest.blobs if b.carried}
        has = {(e.path, e.sha256) for e in reader.manifest.entries}
        missing = [f"layer {d[:19]}" for d in blobs if d not in carried]
        missing += [f.base_path for f in files if (f.base_path, f.sha256) not in has]
        if missing:
            raise BundleError(f"--base {base_bundle} lacks what the delta needs: {_short(missing)}")
        return sources
    if not base_done:
        raise BundleError(
            f"this delta bundle needs its {what} installed under {target}, and it is not",
            "install the base bundle first, or pass --base BASE_BUNDLE",
        )
    missing = _from_site_images(manifest, sources) if blobs else []
    if files:
        assert base.model_name is not None  # the manifest's validator makes sure
        sources.site_model = within(target, f"models/{base.model_name}", "base.model_name")
        for f in files:
            site_file = sources.site_model / f.base_path.split("/", 2)[2]
            if not site_file.is_file() or site_file.stat().st_size != f.size:
                missing.append(f"model file {site_file}")
    if missing:
        raise BundleError(
            f"the site lacks pieces of the {what} this delta builds on: {_short(missing)}",
            "pass --base BASE_BUNDLE",
        )
    return sources


def _from_site_images(manifest: Manifest, sources: Sources) -> list[str]:
    """Find each blob the delta leaves out in the site engine's layer chains; give what is not there."""
    site = images.site_images()
    if site.containerd_store:
        return ["image layers (this Docker keeps images in containerd, whose `docker load` needs every layer)"]
    missing: list[str] = []
    present: set[str] = set()
    carried = {d for d, b in manifest.blob_map().items() if b.carried}
    for image in manifest.images:
        if image.config not in carried:
            # The image did not change: the engine has it by id, and only its names may be new.
            if image.config in site.ids:
                sources.unchanged[image.config] = image.tags
            else:
                missing.append(f"image {image.tags[0]} ({image.config[:19]})")
            continue
        for i, layer in enumerate(image.layers):
            if layer in carried:
                continue
            if images.chain_id(image.layers[: i + 1]) in site.chains:
                present.add(layer)
            else:
                missing.append(f"image layer {layer[:19]}")
    sources.present = frozenset(present)
    return missing


@dataclass(frozen=True)
class Staging:
    """Where `stage` puts what it copies (every path under `root`), and whom it tells."""

    root: Path
    blob_dir: Path  # image blobs, named by digest
    model_staging: Path  # model files, at their paths below the model folder
    copied: Callable[[str], None]  # told each model file's bundle path once it is in place
    progress: Progress
    say: Say


def stage(sources: Sources, to: Staging) -> None:
    """Copy every missing piece into the staging areas, each checked against the delta's manifest."""
    by_base_path: dict[str, list[BaseFile]] = defaultdict(list)
    for f in sources.files:
        by_base_path[f.base_path].append(f)
    if sources.bundle is not None:
        _from_bundle(sources, by_base_path, to)
        return
    assert sources.site_model is not None or not sources.files
    for f in sources.files:
        rel = f.path.split("/", 2)[2]
        site_file = sources.site_model / f.base_path.split("/", 2)[2]  # type: ignore[operator]
        to.say(f"copying model file {rel} from the installed base")
        entry = Entry(path=f.path, size=f.size, sha256=f.sha256, kind="model")
        try:
            _copy_checked(entry, file_chunks(site_file), within(to.model_staging, rel, f.path), to)
        except BundleError:
            raise BundleError(
                f"{site_file}, which the delta takes from the installed base, has changed since the base was "
                "installed: its bytes are not those the delta's manifest names",
                "install the base bundle again, or pass --base BASE_BUNDLE",
            ) from None
        to.copied(f.path)


def _from_bundle(sources: Sources, by_base_path: dict[str, list[BaseFile]], to: Staging) -> None:
    assert sources.bundle is not None
    wanted_files = {blob_file(d): b for d, b in sources.blobs.items()}
    reader = open_bundle(sources.bundle)
    try:
        for entry, chunks in reader.entries():
            if entry.path in wanted_files:
                to.say(f"taking {entry.path} from the base bundle")
                stage_blob(chunks, wanted_files[entry.path], to.blob_dir, entry.path, to.progress, within=to.root)
            elif entry.path in by_base_path:
                targets = by_base_path[entry.path]
                first = targets[0]
                rel = first.path.split("/", 2)[2]
                to.say(f"copying model file {rel} from the base bundle")
                dest = within(to.model_staging, rel, first.path)
                _copy_checked(entry, chunks, dest, to)
                for other in targets[1:]:
                    _copy_checked(
                        entry, file_chunks(dest), within(to.model_staging, other.path.split("/", 2)[2], other.path), to
                    )
                for f in targets:
                    to.copied(f.path)
            else:
                drain(chunks)
    finally:
        reader.close()


def _copy_checked(entry: Entry, chunks: Chunks, dest: Path, to: Staging) -> None:
    stage_file(checked(entry, chunks), dest, to.progress, entry.path, entry.size, within=to.root)
