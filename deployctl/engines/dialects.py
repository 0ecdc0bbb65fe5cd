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

    def bench_info(self, card: dict[str, Any]) -> dict[str, Any]:
        """Give the model information a bench result records, from the model card (`model_card`)."""
        return card

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
        """Give what one server-sent event of a streamed generation on `api` says.

        Nothing in the event is trusted to have the dialect's shape: a field of another type carries no
        token (a proxy's or another server's event is never a KeyError or an AttributeError), and only
        text counts as a token (chat: choices[0].delta.content; completions: choices[0].text).
        """
        if "error" in event:
            # TGI: {"error": "...", "error_type": "overloaded"}; OpenAI servers: {"error": {"type": ...}}.
            error = event["error"]
            kind = error.get("type") if isinstance(error, dict) else event.get("error_type")
            return Chunk(error=str(kind or "stream_error"), detail=error_message(event) or _as_line(event))
        usage = event.get("usage")
        if isinstance(usage, dict) and not event.get("choices"):
            count = usage.get("completion_tokens")
            return Chunk(usage=count if isinstance(count, int) else None)
        if api == "generate":
            token = event.get("token")  # TGI's StreamResponse: a token that is not special is visible text
            return Chunk(token=isinstance(token, dict) and not token.get("special"))
        choices = event.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        text = _field(_field(first, "delta"), "content") if api == "chat" else _field(first, "text")
        return Chunk(token=isinstance(text, str) and text != "")

    def recognizes(self, status: int | None, data: Any) -> str | None:
        """Give why an answer to GET `model_info_path` (its status and JSON) is this dialect's, in a few
        words, or None when it is not."""
        return None

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

    def recognizes(self, status: int | None, data: Any) -> str | None:
        # Fields of TGI's /info that no OpenAI-style server sends (router/src/lib.rs `Info`, TGI v3.3.4).
        if status == 200 and isinstance(data, dict) and all(k in data for k in ("model_id", "max_total_tokens")):
            return f"GET {self.model_info_path} answered TGI's model info"
        return None

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

    def bench_info(self, card: dict[str, Any]) -> dict[str, Any]:
        return {"model_id": card.get("id"), "max_model_len": card.get("max_model_len")}

    def recognizes(self, status: int | None, data: Any) -> str | None:
        if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
            return f"GET {self.model_info_path} answered a model list"
        if status == 401 and isinstance(data, dict) and data.get("error") == "Unauthorized":
            # vLLM's own answer to a missing key (entrypoints/serve/middleware/authenticate.py, vLLM 0.32.0):
            # the route exists behind its key.
            return f"GET {self.model_info_path} answered vLLM's 401"
        return None

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


def known() -> tuple[Dialect, ...]:
    """Give every dialect, in the order an endpoint is asked which one it speaks (probe/dialect.py).

    TGI's first: TGI serves /v1/models too, so its own /info tells it apart; an added dialect comes after.
    """
    return tuple(_KNOWN.values())


def _field(value: Any, key: str) -> Any:
    """Give value[key] when value is an object, else None: an event of another shape carries nothing."""
    return value.get(key) if isinstance(value, dict) else None


def _as_line(data: Any) -> str:
    """Give a JSON value as a short line for a message."""
    return json.dumps(data)[:200]


def error_message(data: Any) -> str | None:
    """Give the message of an error answer in any dialect, or None when `data` holds none.

    TGI's `{"error": "..."}`, the OpenAI envelope `{"error": {"message": "..."}}` (vLLM), FastAPI's
    `{"detail": "..."}` (vLLM's 404/405, and any other FastAPI server): an endpoint given with --engine
    may be something else, so none of these shapes is trusted to be the one the dialect sends.
    """
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    message = error if isinstance(error, str) else data.get("detail")
    return message[:200] if isinstance(message, str) and message else None


def error_text(body: bytes) -> str:
    """Give the message of an HTTP error's body: its JSON error message (error_message), else its first line."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if (message := error_message(data)) is not None:
        return message
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else "(empty body)"
