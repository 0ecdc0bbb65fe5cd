"""The one Jinja2 environment for deployctl's templates (StrictUndefined: a missing value is an error)."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("deployctl", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, **context: Any) -> str:
    """Give the named template (under deployctl/templates/) rendered with `context`."""
    text: str = _environment().get_template(template).render(**context)
    return text
