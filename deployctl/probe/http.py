"""One small HTTP call for probes: a status and a body, or None when nothing answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def request(url: str, timeout: float, body: Any = None, api_key: str | None = None) -> tuple[int | None, bytes]:
    """GET `url` (POST `body` as JSON when given); give (status, body), status None when nothing answers."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return None, b""
