"""One small HTTP call (a status and a body, or None when nothing answers) and the URL check, for every layer."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from deployctl import terminal
from deployctl.errors import InputError

URL_MAX = 2048  # what browsers and proxies commonly accept; an endpoint is far shorter


def check_url(url: str, what: str) -> str:
    """Give `url` if it is an http(s) URL with a host; raise InputError naming `what` otherwise.

    urllib would open file://, ftp:// and data: URLs too: /etc/passwd must never be "probed".
    """
    shown = terminal.shown(url)
    if len(url) > URL_MAX or not url.isprintable() or any(c.isspace() for c in url):
        raise InputError(f"{what} {shown}: not a usable URL", "e.g. http://127.0.0.1:8080")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{what} {shown}: not a URL ({exc})", "e.g. http://127.0.0.1:8080") from None
    if parts.scheme not in ("http", "https"):
        problem = f"{parts.scheme}:// is not supported" if parts.scheme else "not a URL"
        raise InputError(f"{what} {shown}: {problem} (http:// or https:// only)", "e.g. http://127.0.0.1:8080")
    if not parts.hostname:
        raise InputError(f"{what} {shown}: no host", "e.g. http://127.0.0.1:8080")
    if parts.username or parts.password:
        raise InputError(f"{what} {shown}: credentials in the URL would be logged", "pass the key with --api-key-env")
    if parts.query or parts.fragment:
        raise InputError(f"{what} {shown}: an endpoint is a base URL, without ?query or #fragment")
    if port == 0:
        raise InputError(f"{what} {shown}: port 0 is not a port")
    return url


def request(
    url: str, timeout: float, body: Any = None, api_key: str | None = None, *, limit: int = -1
) -> tuple[int | None, bytes]:
    """GET `url` (POST `body` as JSON when given); give (status, body), status None when nothing answers.

    With `limit`, at most that many bytes of the body are read.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=timeout) as resp:
            return int(resp.status), resp.read(limit)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(limit)
    except (urllib.error.URLError, OSError, TimeoutError):
        return None, b""
