"""What a client or a monitoring system sees of a vLLM server, as data that two servers can be compared on.

One list of requests (REQUESTS) is sent to the real engine (tests/data/vllm/record.py keeps its answers
in tests/data/vllm/recorded-<version>.json) and to the simulator started with the same command line.
Each answer becomes an Observation: the status, the content type, and the body's shape: every key, the
type of every value, and the values a client branches on (object, finish_reason, role, error type,
param and code, messages with their numbers written as N); a stream becomes its events, runs of the
same content chunk counted once. /metrics becomes its families with their types and label names.
Text, ids, token ids and timings are left out: they differ between a model and a simulator by design.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

KEY = "conformance-key"
MODEL = "tiny"
MAX_MODEL_LEN = 256
# The command line both servers run (the real one with the model directory in place of MODEL_PATH).
MODEL_PATH = "/data/models/tiny"
SERVE_ARGS = [
    "--served-model-name",
    MODEL,
    "--max-model-len",
    str(MAX_MODEL_LEN),
    "--max-num-seqs",
    "8",
    "--api-key",
    KEY,
]
# Values kept as they are: what clients and dashboards branch on.
KEPT = {"object", "finish_reason", "role", "type", "param", "code", "owned_by", "detail"}
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
LONG_PROMPT = "word " * 400  # more tokens than max_model_len with any tokenizer


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str
    body: Any = None  # JSON-able, or bytes sent as they are
    auth: str = "key"  # key, none, wrong, lower (the scheme in lower case)
    content_type: str = "application/json"


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Hello there", "max_tokens": 4, **extra}


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **extra}


REQUESTS: list[Call] = [
    # Routes and the key: vLLM checks it on /v1 (and /v2, /inference) only.
    Call("health", "GET", "/health", auth="none"),
    Call("ping", "GET", "/ping", auth="none"),
    Call("ping post", "POST", "/ping", auth="none"),
    Call("version", "GET", "/version", auth="none"),
    Call("models without key", "GET", "/v1/models", auth="none"),
    Call("models wrong key", "GET", "/v1/models", auth="wrong"),
    Call("models lower-case scheme", "GET", "/v1/models", auth="lower"),
    Call("models", "GET", "/v1/models"),
    Call("tokenize without key", "POST", "/tokenize", {"model": MODEL, "prompt": "hello world"}, auth="none"),
    Call("detokenize without key", "POST", "/detokenize", {"model": MODEL, "tokens": [5, 6]}, auth="none"),
    Call("unknown path without key", "GET", "/nope", auth="none"),
    Call("unknown /v1 path without key", "GET", "/v1/nope", auth="none"),
    Call("unknown /v1 path", "GET", "/v1/nope"),
    Call("completion without key", "POST", "/v1/completions", completion(), auth="none"),
    # Completions and chat, whole and streamed.
    Call("completion", "POST", "/v1/completions", completion()),
    Call("completion prompt list", "POST", "/v1/completions", completion(prompt=["Hello there"])),
    Call("completion stream", "POST", "/v1/completions", completion(stream=True)),
    Call("completion stream options {}", "POST", "/v1/completions", completion(stream=True, stream_options={})),
    Call(
        "completion stream with usage",
        "POST",
        "/v1/completions",
        completion(stream=True, stream_options={"include_usage": True}),
    ),
    Call("chat", "POST", "/v1/chat/completions", chat()),
    Call(
        "chat content parts",
        "POST",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]),
    ),
    Call("chat stream", "POST", "/v1/chat/completions", chat(stream=True)),
    Call(
        "chat stream with usage",
        "POST",
        "/v1/chat/completions",
        chat(stream=True, stream_options={"include_usage": True}),
    ),
    # Errors.
    Call("bad json", "POST", "/v1/completions", b'{"prompt": '),
    Call("body a list", "POST", "/v1/completions", [1, 2]),
    Call("unknown model", "POST", "/v1/completions", completion(model="other")),
    Call("max_tokens 0", "POST", "/v1/completions", completion(max_tokens=0)),
    Call("max_tokens over max_model_len", "POST", "/v1/completions", completion(max_tokens=1000)),
    Call("max_tokens true", "POST", "/v1/completions", completion(max_tokens=True)),
    Call("max_tokens a string", "POST", "/v1/completions", completion(max_tokens="4")),
    Call("prompt over max_model_len", "POST", "/v1/completions", completion(prompt=LONG_PROMPT)),
    Call("prompt empty", "POST", "/v1/completions", completion(prompt="")),
    Call("stream_options without stream", "POST", "/v1/completions", completion(stream_options={})),
    Call("stream_options a string", "POST", "/v1/completions", completion(stream=True, stream_options="yes")),
    Call(
        "seed 5000 digits",
        "POST",
        "/v1/completions",
        b'{"prompt": "Hi", "max_tokens": 2, "seed": ' + b"9" * 5000 + b"}",
    ),
    Call("chat without messages", "POST", "/v1/chat/completions", {"model": MODEL, "max_tokens": 4}),
    Call(
        "chat content text not a string",
        "POST",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": [{"text": 5}]}]),
    ),
    Call("chat stream_options a string", "POST", "/v1/chat/completions", chat(stream=True, stream_options="yes")),
    Call("not json content type", "POST", "/v1/completions", b'{"prompt": "Hi"}', content_type="text/plain"),
    Call(
        "prompt plus max_tokens over max_model_len",
        "POST",
        "/v1/completions",
        completion(prompt="word " * 60, max_tokens=250),
    ),
    Call("invocations without key", "POST", "/invocations", completion(), auth="none"),
    Call("chat max_completion_tokens", "POST", "/v1/chat/completions", chat(max_tokens=None, max_completion_tokens=3)),
    Call("completion seed and stop", "POST", "/v1/completions", completion(seed=7, stop=["zzz"])),
    Call("get on a post route", "GET", "/v1/completions"),
]
# Deep nesting: the same answer whatever the depth past the server's bound.
REQUESTS.append(Call("json nested 100000 deep", "POST", "/v1/completions", b"[" * 100_000 + b"]" * 100_000))
REQUESTS.append(Call("lone surrogate", "POST", "/v1/completions", b'{"prompt": "\\ud800", "max_tokens": 2}'))


@dataclass
class Observation:
    status: int | None
    content_type: str
    body: Any = None
    events: list[Any] = field(default_factory=list)


def _header(call: Call) -> dict[str, str]:
    headers = {"Content-Type": call.content_type}
    if call.auth == "key":
        headers["Authorization"] = f"Bearer {KEY}"
    elif call.auth == "lower":
        headers["Authorization"] = f"bearer {KEY}"
    elif call.auth == "wrong":
        headers["Authorization"] = "Bearer not-the-key"
    return headers


def send(base: str, call: Call, timeout: float = 60.0) -> tuple[int | None, str, bytes]:
    """Give (status, content type, body) of one call."""
    data = None
    if call.body is not None:
        data = call.body if isinstance(call.body, bytes) else json.dumps(call.body).encode()
    req = urllib.request.Request(base + call.path, data=data, headers=_header(call), method=call.method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
    except (urllib.error.URLError, OSError):
        return None, "", b""


def shape(value: Any, key: str | None = None) -> Any:
    """Give what a client can tell about a JSON value: types, keys, and the values clients branch on."""
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [shape(v) for v in value]
        if all(not isinstance(v, dict | list) for v in value):
            return sorted({json.dumps(i) for i in items})  # a list of scalars: which types it holds
        return items
    if key == "message" and isinstance(value, str):
        # The first line: vLLM's own messages whole, pydantic's dumps by their headline ("N validation errors").
        return NUMBER.sub("N", value.split("\n", 1)[0])
    if isinstance(value, str):
        return NUMBER.sub("N", value) if key in KEPT or key == "error" else "str"
    if isinstance(value, bool) or value is None:
        return value
    if key == "code" and isinstance(value, int):
        return value
    return "float" if isinstance(value, float) else "int"


def observe(status: int | None, content_type: str, body: bytes) -> Observation:
    kind = content_type.split(";")[0].strip()
    obs = Observation(status, kind)
    if kind == "text/event-stream":
        previous = None
        for line in body.decode(errors="replace").splitlines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            event = data if data == "[DONE]" else shape(json.loads(data))
            if event != previous:  # a run of content chunks of one shape counts once
                obs.events.append(event)
            previous = event
        return obs
    if kind == "application/json":
        try:
            obs.body = shape(json.loads(body))
        except ValueError:
            obs.body = "not JSON"
    else:
        obs.body = "empty" if not body else kind
    return obs


def metrics_families(text: str) -> dict[str, dict[str, Any]]:
    """Give each /metrics family's type and label names (and whether its samples are floats)."""
    families: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            kinds[name] = kind
            families.setdefault(name, {"type": kind, "labels": [], "float": True})
        elif line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            name, _, labels = sample.partition("{")
            family = next(
                (f for f in (name, re.sub(r"_(bucket|sum|count|total|created)$", "", name)) if f in kinds), name
            )
            entry = families.setdefault(family, {"type": "untyped", "labels": [], "float": True})
            names = sorted({part.split("=", 1)[0] for part in re.findall(r'(\w+)="', labels)} - {"le", "quantile"})
            entry["labels"] = sorted(set(entry["labels"]) | set(names))
            entry["float"] = entry["float"] and ("." in value or "e" in value or value in ("+Inf", "NaN"))
    return families


def record(base: str) -> dict[str, Any]:
    """Give every request's answer from the server at `base` as it came (status, content type, body text), and
    its /metrics text: what a recording keeps, normalized only when compared."""
    answers = {}
    for call in REQUESTS:
        status, kind, body = send(base, call)
        answers[call.name] = {"status": status, "content_type": kind, "body": body.decode("utf-8", "replace")}
    _, _, metrics = send(base, Call("metrics", "GET", "/metrics", auth="none"))
    return {"answers": answers, "metrics": metrics.decode("utf-8", "replace")}


def observations(record: dict[str, Any]) -> dict[str, Any]:
    """Give a record's answers as Observations and its /metrics as families: what is compared."""
    answers = {
        name: asdict(observe(a["status"], a["content_type"], a["body"].encode()))
        for name, a in record["answers"].items()
    }
    return {"answers": answers, "metrics": metrics_families(record["metrics"])}


def differences(expected_record: dict[str, Any], got_record: dict[str, Any]) -> tuple[list[str], int]:
    """Give (what differs, how many behaviours were compared) between two records."""
    expected, got = observations(expected_record), observations(got_record)
    diffs: list[str] = []
    compared = 0
    for name, want in expected["answers"].items():
        have = got["answers"].get(name)
        for aspect in ("status", "content_type", "body", "events"):
            compared += 1
            if have is None or want[aspect] != have[aspect]:
                diffs.append(
                    f"{name}: {aspect} {json.dumps(want[aspect])[:400]} != {json.dumps(have and have[aspect])[:400]}"
                )
    for family, want in expected["metrics"].items():
        compared += 1
        have = got["metrics"].get(family)
        if have != want:
            diffs.append(f"/metrics {family}: {want} != {have}")
    for family in sorted(set(got["metrics"]) - set(expected["metrics"])):
        compared += 1
        diffs.append(f"/metrics {family}: not sent by the engine")
    return diffs, compared


def simulator_record() -> dict[str, Any]:
    """Give the simulator's record, started with the command line the engine ran (SERVE_ARGS), answering fast."""
    from deployctl.sim.config import from_args
    from helpers import simserver

    cfg = from_args(
        [MODEL_PATH, *SERVE_ARGS],
        {"SIM_ENGINE": "vllm", "SIM_LOAD_SECONDS": "0", "SIM_TTFT_BASE_MS": "1", "SIM_ITL_MS": "1"},
    )
    with simserver.running(cfg) as url:
        return record(url)
