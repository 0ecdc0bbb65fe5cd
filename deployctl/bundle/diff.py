"""`bundle diff OLD NEW`: what an upgrade from one bundle to the next changes, and what a delta of it carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployctl.bundle.archive import read_manifest
from deployctl.bundle.format import Manifest


@dataclass(frozen=True)
class Change:
    kind: str  # image, layer, model file, stack, spec, wheel
    name: str
    change: str  # added, removed, changed, same
    bytes: int  # what a delta of NEW over OLD carries for it (0: nothing)


@dataclass(frozen=True)
class Diff:
    old: str
    new: str
    changes: list[Change]
    delta_bytes: int  # the sum of what a delta carries (images uncompressed, model files as they are)
    full_bytes: int  # the same for the full NEW bundle


def _repo(tag: str) -> str:
    """Give an image name without its tag: two revisions of one image share it."""
    return tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag


def _model_files(m: Manifest) -> dict[str, tuple[str, int]]:
    """Give model files by their path inside the model folder: (sha256, size)."""
    files = {e.path.split("/", 2)[2]: (e.sha256, e.size) for e in m.entries if e.kind == "model"}
    files.update({f.path.split("/", 2)[2]: (f.sha256, f.size) for f in m.model_from_base()})
    return files


def _wheels(m: Manifest) -> dict[str, tuple[str, int]]:
    """Give wheels by file name, carried or left to the base: (sha256, size)."""
    wheels = {e.path.split("/", 1)[1]: (e.sha256, e.size) for e in m.entries if e.kind == "wheel"}
    wheels.update({f.path.split("/", 1)[1]: (f.sha256, f.size) for f in m.from_base if f.path.startswith("wheels/")})
    return wheels


def _file_changes(kind: str, old: dict[str, tuple[str, int]], new: dict[str, tuple[str, int]]) -> list[Change]:
    """Give each file of NEW (by name: sha256, size) as added, same or changed, and OLD's that went, as removed.

    A delta carries a file only when OLD has no file with its sha256 (under any name).
    """
    old_shas = {sha for sha, _ in old.values()}
    out = []
    for name, (sha, size) in sorted(new.items()):
        state = "added" if name not in old else ("same" if old[name][0] == sha else "changed")
        out.append(Change(kind, name, state, 0 if sha in old_shas else size))
    return out + [Change(kind, name, "removed", 0) for name in sorted(old) if name not in new]


def diff(old_path: Path, new_path: Path) -> Diff:
    """Give what changes from OLD to NEW (bundles or manifest.json files), item by item."""
    _, old = read_manifest(old_path)
    _, new = read_manifest(new_path)
    changes: list[Change] = []
    old_blobs, new_blobs = old.blob_map(), new.blob_map()
    old_repos = {_repo(t): i for i in old.images for t in i.tags}
    for image in new.images:
        before = next((old_repos[_repo(t)] for t in image.tags if _repo(t) in old_repos), None)
        fresh = [d for d in image.layers if d not in old_blobs]
        carried = sum(new_blobs[d].size for d in fresh)
        carried += 0 if image.config in old_blobs else new_blobs[image.config].size
        state = "added" if before is None else ("same" if before.config == image.config else "changed")
        changes.append(Change("image", image.tags[0], state, carried))
        changes += [Change("layer", f"{image.tags[0]} {d[:19]}", "added", new_blobs[d].size) for d in fresh]
    new_repos = {_repo(t) for i in new.images for t in i.tags}
    changes += [
        Change("image", i.tags[0], "removed", 0) for i in old.images if not {_repo(t) for t in i.tags} & new_repos
    ]
    new_files, new_wheels = _model_files(new), _wheels(new)
    changes += _file_changes("model file", _model_files(old), new_files)
    old_entries = {e.path: e.sha256 for e in old.entries}
    for e in new.entries:
        if e.kind in ("stack", "spec"):
            state = "added" if e.path not in old_entries else ("same" if old_entries[e.path] == e.sha256 else "changed")
            changes.append(Change(e.kind, e.path, state, e.size))
    changes += _file_changes("wheel", _wheels(old), new_wheels)
    full = sum(b.size for b in new.blobs) + sum(size for _, size in new_files.values())
    full += sum(e.size for e in new.entries if e.kind in ("stack", "spec"))
    full += sum(size for _, size in new_wheels.values())
    delta = sum(c.bytes for c in changes if c.kind != "layer")
    return Diff(str(old_path), str(new_path), changes, delta, full)
