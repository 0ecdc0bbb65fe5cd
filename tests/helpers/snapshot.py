"""Every path under a folder with its kind and content hash (links not followed): two equal snapshots, nothing changed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path


def snapshot(root: Path, skip: Callable[[str], bool] = lambda rel: False) -> dict[str, str]:
    """Give {relative path: sha256, "dir" or "link:TARGET"} for everything under root but what `skip` names."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if skip(rel):
            continue
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out
