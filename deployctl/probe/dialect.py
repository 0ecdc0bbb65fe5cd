"""Which API an endpoint speaks, asked of the endpoint itself, and what it says about its model.

Each dialect (engines/dialects.py) is asked in turn: GET its model information route, and does the answer
have its shape (`Dialect.recognizes`)? TGI answers `GET /info` with its model info (router/src/server.rs
`get_model_info`: `model_id`, `max_total_tokens`, `router`, ...). vLLM has no `/info` (404 `{"detail":
"Not Found"}`, FastAPI's answer to an unknown path) and answers `GET /v1/models` with `{"object": "list",
"data": [...]}`, or 401 `{"error": "Unauthorized"}` without the key (entrypoints/serve/middleware/
authenticate.py, vLLM 0.32.0). TGI serves `/v1/models` too, so `/info` is asked first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployctl.engines import dialects
from deployctl.engines.dialects import Dialect
from deployctl.http import request

# What to do when the endpoint answers like no engine deployctl knows.
ENGINE_HINT = "pass --engine NAME (e.g. tgi or vllm)"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


@dataclass(frozen=True)
class Detection:
    dialect: Dialect | None  # None: it answered like no dialect deployctl knows, or not at all
    why: str  # what was found, in one line (for the message when dialect is None)


def detect(endpoint: str, api_key: str | None = None, timeout: float = 5.0) -> Detection:
    """Give the dialect the endpoint answers in, or None and what answered instead."""
    answers: list[str] = []
    statuses: list[int | None] = []
    for dialect in dialects.known():
        key = api_key if dialect.model_info_takes_key else None
        status, body = request(f"{endpoint}{dialect.model_info_path}", timeout, api_key=key)
        why = dialect.recognizes(status, _json(body) if status in (200, 401) else None)
        if why is not None:
            return Detection(dialect, why)
        answers.append(f"{dialect.title} (GET {dialect.model_info_path}: {status})")
        statuses.append(status)
    if all(status is None for status in statuses):
        return Detection(None, f"nothing answers at {endpoint}")
    return Detection(None, f"{endpoint} answers in none of the APIs deployctl knows: {', '.join(answers)}")


def model_info(
    endpoint: str, dialect: Dialect, api_key: str | None, timeout: float
) -> tuple[int | None, dict[str, Any] | None]:
    """Give (status, the model card the server answers with): TGI's /info, or the first /v1/models card.

    The card is None unless the body has the dialect's shape (any other JSON, or none, from a proxy or
    another server is not trusted).
    """
    key = api_key if dialect.model_info_takes_key else None
    status, body = request(f"{endpoint}{dialect.model_info_path}", min(timeout, 5.0), api_key=key)
    return status, dialect.model_card(_json(body) if status == 200 else None)
