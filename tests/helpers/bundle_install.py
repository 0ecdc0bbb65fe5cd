"""`bundle install` as the CLI runs it (ops.bundling: verify, load, place, then render the stack), positional
like the core function, for tests that drive it from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def install(
    path: Path,
    target: Path,
    pubkey: Path | None,
    insecure: bool = False,
    simulate: bool = False,
    progress: Any = None,
    say: Any = None,
    *,
    base: Path | None = None,
) -> Any:
    from deployctl.ops import bundling

    return bundling.install(
        path,
        target=target,
        pubkey=pubkey,
        insecure=insecure,
        simulate=simulate,
        progress=progress or (lambda item, done, total: None),
        say=say,
        base=base,
    )
