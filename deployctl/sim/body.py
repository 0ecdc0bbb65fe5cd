"""The simulator's one reader of request bodies: bounded in time, size, depth and number length.

Every way a body can be malformed becomes a BadBody (each dialect answers it as its engine answers a
request it cannot read: 400 in vLLM's envelope, 422 in TGI's), never an exception the server answers
with 500: a body that is not JSON or not UTF-8, nested deeper than MAX_DEPTH (Python's parser would
raise RecursionError at about a thousand), an integer longer than MAX_INT_DIGITS (Python refuses to
convert past 4,300 digits with a ValueError; no engine value needs more than a 64-bit seed),
NaN/Infinity, or a string holding a lone UTF-16 surrogate (valid JSON escapes, but no text:
`"\\ud800"` cannot be encoded, so tokenizing it would fail later).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

MAX_DEPTH = 64  # deeper than any request either API defines (chat content parts are 4 levels)
MAX_INT_DIGITS = 20  # 2**64 has 20 digits: every count, limit and seed fits
BODY_TIMEOUT_S = 30.0  # the whole body must arrive within this (a slow sender holds no handler longer)


class BadBody(Exception):
    """The request's body cannot be read as the JSON object a route takes; the message says why.

    `kind` says which way, for the dialects that answer each differently: "syntax" (not JSON; `position`
    is where the parser stopped), "bound" (deeper, longer or stranger than the bounds allow), "text"
    (a lone surrogate), "type" (JSON, but not an object) or "timeout".
    """

    def __init__(self, message: str, kind: str = "bound", *, status: int = 400, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.position = position
        self.detail = message


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadBody(f"an integer of {len(text.lstrip('-'))} digits is out of range (at most {MAX_INT_DIGITS})")
    return int(text)


def _constant(name: str) -> Any:
    raise BadBody(f"{name} is not a JSON number")


def _check(value: Any) -> None:
    """Walk the parsed value (without recursion): depth, and strings that are text."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise BadBody(f"the JSON is nested deeper than {MAX_DEPTH} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadBody(
                    "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text", "text"
                ) from None


def parse(raw: bytes) -> Any:
    """Give the JSON value in `raw`, checked; BadBody for anything malformed."""
    try:
        value = json.loads(raw, parse_int=_int, parse_constant=_constant)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        err = BadBody(f"the body is not valid JSON: {exc}", "syntax", position=exc.pos)
        err.detail = exc.msg
        raise err from None
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise BadBody(f"the body is not valid JSON: {exc}") from None
    _check(value)
    return value


async def read_object(request: web.Request) -> dict[str, Any]:
    """Give the request's body as a JSON object; BadBody (408 when it does not arrive in time) otherwise."""
    try:
        raw = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
    except TimeoutError:
        raise BadBody(f"the body did not arrive within {BODY_TIMEOUT_S:.0f}s", "timeout", status=408) from None
    except web.HTTPRequestEntityTooLarge:
        raise
    body = parse(raw)
    if not isinstance(body, dict):
        err = BadBody(f"the body must be a JSON object, not {type(body).__name__}", "type")
        err.detail = f"<{type(body).__name__} of {len(body)} items>" if isinstance(body, list) else repr(body)
        raise err
    return body
