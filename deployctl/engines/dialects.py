"""The HTTP APIs engines speak (their dialects): routes, how to ask for a generation, how to read what comes back.

An engine holds its dialect (`Engine.dialect`); the plan records its name (`EngineConfig.dialect`), and the
probes, the load generator and the simulator's stand-in ask the dialect instead of branching on a name. Two
dialects exist: TGI's own routes, and the OpenAI-compatible API (vLLM's). An engine with an API of its own
adds a dialect here (and simulator routes, deployctl/sim/); one that speaks an existing API reuses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from deployctl.errors import InputError

if TYPE_CHECKING:
    from deployctl.plan import Plan

# The generation routes `deployctl bench` can drive: TGI's /generate_stream, OpenAI's completions and chat.
Api = Literal["generate", "chat", "completions"]
_ROUTES: dict[str, str] = {
    "generate": "/generate_stream",
    "completions": "/v1/completions",
    "chat": "/v1/chat/completions",
}


@dataclass(frozen=True)
class Chunk:
    """What one streamed event says: a token to count, the server's own token count, or an error."""

    token: bool = False
    usage: int | None = None  # the server's count of generated tokens (OpenAI's last chunk with stream_options)
    error: str | None = None  # the kind of error, e.g. "overloaded"
    detail: str = ""  # the error as the server wrote it


class Dialect:
    """An engine's HTTP API as the probes use it (plain values and pure functions, no I/O)."""

    name: str  # recorded in plans and bench results
    title: str  # how a message names it
    health_path = "/health"
    model_info_path: str  # where the server says which model it serves, and its limits
    model_info_takes_key = False  # whether that route needs the API key
    apis: tuple[Api, ...]  # the generation routes it serves; the first is the one a probe uses by default
    # The simulator personality that speaks this dialect (SIM_ENGINE, deployctl/sim/config.py): it answers
    # these routes and reads the launcher flags of the engine it was modelled on.
    simulated_by: str

    def expected_card(self, plan: Plan) -> dict[str, Any]:
        """Give what the model information route should say, from the plan."""
        raise NotImplementedError

    def model_card(self, data: Any) -> dict[str, Any] | None:
        """Give the model information in the route's JSON answer (None when it holds none)."""
        return data if isinstance(data, dict) else None

    def bench_info(self, data: Any) -> dict[str, Any] | None:
        """Give the model information a bench result records."""
        return data if isinstance(data, dict) else None

    def tokenize_body(self, text: str) -> dict[str, Any]:
        """Give the body that asks the server's /tokenize route to count the tokens of `text`."""
        return {"inputs": text}

    def stream_request(
        self, api: Api, prompt: str, max_tokens: int, *, seed: int | None = None, exact: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """Give the route and body of one streamed generation (`exact`: ask for exactly `max_tokens` where it can)."""
        seeded = {"seed": seed} if seed is not None else {}
        if api == "generate":
            return _ROUTES[api], {
                "inputs": prompt,
                "parameters": {"max_new_tokens": max_tokens, **seeded, "details": False},
            }
        body: dict[str, Any] = {"max_tokens": max_tokens, "stream": True, **seeded}
        if api == "chat":
            body = {"messages": [{"role": "user", "content": prompt}], **body}
        else:
            body = {"prompt": prompt, **body}
        return _ROUTES[api], {**body, **self._openai_extras(exact)}

    def _openai_extras(self, exact: bool) -> dict[str, Any]:
        return {}

    def read_chunk(self, api: Api, event: dict[str, Any]) -> Chunk:
        """Give what one server-sent event of a streamed generation on `api` says."""
        if "error" in event:
            # TGI: {"error": "...", "error_type": "overloaded"}; OpenAI servers: {"error": {"type": ...}}.
            error = event["error"]
            kind = error.get("type") if isinstance(error, dict) else event.get("error_type")
            return Chunk(error=str(kind or "stream_error"), detail=str(error))
        if isinstance(event.get("usage"), dict) and not event.get("choices"):
            count = event["usage"].get("completion_tokens")
            return Chunk(usage=count if isinstance(count, int) else None)
        if api == "chat":
            return Chunk(token=bool(((event.get("choices") or [{}])[0].get("delta") or {}).get("content")))
        if api == "completions":
            return Chunk(token=bool((event.get("choices") or [{}])[0].get("text")))
        return Chunk(token=not (event.get("token") or {}).get("special"))

    def example_request(self, served_name: str) -> tuple[str, dict[str, Any]]:
        """Give the route and body of the request an operator can try first."""
        raise NotImplementedError

    def example(self, endpoint: str, served_name: str, *, with_key: bool) -> str:
        """Give a curl command line that asks the endpoint for a short answer."""
        path, body = self.example_request(served_name)
        auth = ' -H "Authorization: Bearer $API_KEY"' if with_key else ""
        data = json.dumps(body, separators=(",", ":"))
        return f"curl {endpoint}{path}{auth} -H 'Content-Type: application/json' -d '{data}'"


class TgiApi(Dialect):
    """TGI's own routes (/info, /generate, /generate_stream); it serves the OpenAI chat route too."""

    name = "tgi"
    title = "TGI's API"
    model_info_path = "/info"
    apis: tuple[Api, ...] = ("generate", "chat", "completions")
    simulated_by = "tgi"

    def expected_card(self, plan: Plan) -> dict[str, Any]:
        limits = plan.limits
        return {
            "model_id": plan.model_id,
            "max_input_tokens": limits.max_input_tokens,
            "max_total_tokens": limits.max_total_tokens,
            "max_concurrent_requests": limits.max_concurrent_requests,
        }

    def example_request(self, served_name: str) -> tuple[str, dict[str, Any]]:
        return "/generate", {"inputs": "Hello", "parameters": {"max_new_tokens": 20}}


class OpenAiApi(Dialect):
    """The OpenAI-compatible API as vLLM serves it (/v1/models, /v1/completions, /v1/chat/completions)."""

    name = "openai"
    title = "the OpenAI API"
    model_info_path = "/v1/models"
    model_info_takes_key = True
    apis: tuple[Api, ...] = ("completions", "chat")
    simulated_by = "vllm"

    def expected_card(self, plan: Plan) -> dict[str, Any]:
        return {"id": plan.served_name, "max_model_len": plan.limits.max_total_tokens}

    def model_card(self, data: Any) -> dict[str, Any] | None:
        cards = data.get("data") if isinstance(data, dict) else None
        return cards[0] if isinstance(cards, list) and cards and isinstance(cards[0], dict) else None

    def bench_info(self, data: Any) -> dict[str, Any] | None:
        if not isinstance(data, dict):
            return None
        card = self.model_card(data) or {}
        return {"model_id": card.get("id"), "max_model_len": card.get("max_model_len")}

    def tokenize_body(self, text: str) -> dict[str, Any]:
        return {"prompt": text}

    def _openai_extras(self, exact: bool) -> dict[str, Any]:
        # vLLM: usage in a last chunk (stream_options), and exactly max_tokens (ignore_eos, its extension).
        return {"stream_options": {"include_usage": True}, **({"ignore_eos": True} if exact else {})}

    def example_request(self, served_name: str) -> tuple[str, dict[str, Any]]:
        return "/v1/completions", {"model": served_name, "prompt": "Hello", "max_tokens": 20}


TGI = TgiApi()
OPENAI = OpenAiApi()
_KNOWN: dict[str, Dialect] = {d.name: d for d in (TGI, OPENAI)}


def add(dialect: Dialect) -> None:
    """Make a dialect known by its name (engines.register does it for an engine's own)."""
    _KNOWN.setdefault(dialect.name, dialect)


def get(name: str) -> Dialect:
    """Give the dialect a plan names; InputError for one this deployctl does not know."""
    if name not in _KNOWN:
        raise InputError(
            f"the plan's engine speaks an API deployctl does not know ({name!r})",
            f"known: {', '.join(_KNOWN)}; render the stack again with this deployctl",
        )
    return _KNOWN[name]


def for_api(api: str | None) -> Dialect:
    """Give the dialect a bare --endpoint is taken to speak: the one whose default route was asked for, else TGI's."""
    return next((d for d in _KNOWN.values() if d.apis[0] == api), TGI)
