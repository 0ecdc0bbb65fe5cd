"""The one rule for text that reaches a terminal: whatever came from a file, a bundle, a model or the network.

A value from outside can hold escape sequences (ESC [2J clears the screen, OSC 0 retitles the
window), carriage returns that overprint a line, and Unicode format characters (bidi overrides such
as U+202E, zero-width joiners, line and paragraph separators) that make printed text read other
than it is. `shown` keeps printable text as it is and writes every other character as a Python
escape (\\x1b, \\u202e), so the reader sees what is there; long values are cut.
"""

from __future__ import annotations


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: object, limit: int | None = 60) -> str:
    """Give `text` safe for one line of a terminal: control, format (bidi) and separator characters escaped, cut to `limit`.

    `str.isprintable` is false exactly for Unicode's Cc (controls), Cf (format: bidi overrides,
    zero-width characters), Zl, Zp and Zs other than the space, Co, Cn and Cs: each is escaped.
    """
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[: max(limit - 3, 0)] + "..."
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _escape(c) for c in value)
