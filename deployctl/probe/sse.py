"""Server-sent events one line at a time: the `data:` lines of a streamed generation, TGI's and OpenAI's alike.

Both dialects stream JSON objects as `data: {...}` lines; OpenAI ends with `data: [DONE]`, TGI by
closing the stream. Comments, `event:` and `id:` lines and the blank lines between events carry no data.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Literal


class End(enum.Enum):
    """The stream says it is over (`data: [DONE]`)."""

    DONE = "[DONE]"


DONE = End.DONE


def parse_sse_line(raw: bytes) -> dict[str, Any] | Literal[End.DONE] | None:
    """Give the JSON object a `data:` line carries, DONE at `data: [DONE]`, or None for a line without data.

    ValueError when the data is not a JSON object (a broken or hostile stream).
    """
    line = raw.strip()
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return DONE
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError(f"the stream sent a line that is not JSON: {data[:80]!r}") from None
    if not isinstance(event, dict):
        raise ValueError(f"the stream sent a line that is not a JSON object: {data[:80]!r}")
    return event
