"""Which API an endpoint speaks, asked of the endpoint itself: TGI's routes or OpenAI's (vLLM).

TGI answers `GET /info` with its model info (router/src/server.rs `get_model_info`: `model_id`,
`max_total_tokens`, `router`, ...). vLLM has no `/info` (404 `{"detail": "Not Found"}`, FastAPI's
answer to an unknown path) and answers `GET /v1/models` with `{"object": "list", "data": [...]}`, or
401 `{"error": "Unauthorized"}` without the key (entrypoints/serve/middleware/authenticate.py,
vLLM 0.32.0). TGI serves `/v1/models` too, so `/info` is asked first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployctl.engines.base import Dialect
from deployctl.probe.http import request

# The fields of TGI's /info that no OpenAI-style server sends (router/src/lib.rs `Info`, TGI v3.3.4).
TGI_INFO_FIELDS = ("model_id", "max_total_tokens")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class Detection:
    dialect: Dialect | None  # None: it answered like neither engine, or not at all
    why: str  # what was found, in one line (for the message when dialect is None)


def detect(endpoint: str, api_key: str | None = None, timeout: float = 5.0) -> Detection:
    """Give the dialect the endpoint answers in ("tgi" or "openai"), or None and what answered instead."""
    info_status, body = request(f"{endpoint}/info", timeout)
    info = _json(body) if info_status == 200 else None
    if isinstance(info, dict) and all(k in info for k in TGI_INFO_FIELDS):
        return Detection("tgi", "GET /info answered TGI's model info")
    status, body = request(f"{endpoint}/v1/models", timeout, api_key=api_key)
    models = _json(body) if status in (200, 401) else None
    if status == 200 and isinstance(models, dict) and isinstance(models.get("data"), list):
        return Detection("openai", "GET /v1/models answered a model list")
    if status == 401 and isinstance(models, dict) and models.get("error") == "Unauthorized":
        # vLLM's own answer to a missing key: the route exists behind its key.
        return Detection("openai", "GET /v1/models answered vLLM's 401")
    if info_status is None and status is None:
        return Detection(None, f"nothing answers at {endpoint}")
    return Detection(
        None,
        f"{endpoint} answers neither like TGI (GET /info: {info_status}) nor like vLLM (GET /v1/models: {status})",
    )


def model_info(
    endpoint: str, dialect: Dialect, api_key: str | None, timeout: float
) -> tuple[int | None, dict[str, Any] | None]:
    """Give (status, what the server says about its model): TGI's /info, or vLLM's first /v1/models card.

    The card is None unless the body has the dialect's shape (any other JSON, or none, from a proxy or
    another server is not trusted).
    """
    path = "/v1/models" if dialect == "openai" else "/info"
    status, body = request(f"{endpoint}{path}", min(timeout, 5.0), api_key=api_key if dialect == "openai" else None)
    data = _json(body) if status == 200 else None
    if dialect == "openai":
        cards = data.get("data") if isinstance(data, dict) else None
        data = cards[0] if isinstance(cards, list) and cards and isinstance(cards[0], dict) else None
    return status, data if isinstance(data, dict) else None
