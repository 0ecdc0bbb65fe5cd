"""`bundle install` as the CLI runs it (ops.bundling: verify, load, place, then render the stack), positional
like the core function, for tests that drive it from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def install(path: Path, target: Path, pubkey: Path | None, **options: Any) -> Any:
    """Give ops.bundling.install's result for the bundle at `path` installed at `target`: the CLI's defaults
    (signed, not simulated, silent), each replaced by the one `options` names."""
    from deployctl.ops import bundling

    cli_defaults: dict[str, Any] = {
        "insecure": False,
        "simulate": False,
        "progress": lambda item, done, total: None,
        "say": None,
    }
    return bundling.install(path, target=target, pubkey=pubkey, **{**cli_defaults, **options})
