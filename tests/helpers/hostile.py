"""Hypothesis strategies for hostile inputs: spec YAML and bench result files, each bad by construction.

Every generated input carries at least one problem that deployctl must refuse (chosen from
HOSTILE_SPEC / HOSTILE_BENCH), inside random noise, so the expected outcome is always exit 2.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import strategies as st

SPEC_KEYS = ("name", "engine", "image", "model", "gpus", "gpu_model", "limits", "serve", "power", "stack_dir")
BAD_NAMES = [
    "../../etc",
    "tiny$HOME",
    "tiny\U0001f600",
    "a" * 300,
    "/etc/passwd",
    ".",
    "..",
    "-rf",
    "a b",
    "x\x1b[2J",
    "a\u2028b",
    "$(reboot)",
    "",
]
# Values that are never valid where they are put.
BAD_PORTS = [True, False, 0, -1, 65536, 10**40, "8080", 80.5, None, [80], {"p": 80}]
BAD_GPUS = [True, 0, -3, 65, [], [0, 0], [True], [-1], ["GPU 1"], [[0]], "two", 1.5, {"n": 2}]
BAD_IMAGES = ["", " ", "UPPER/Case:tag", "image with spaces", "a" * 600, "x:", "@sha256:00", "repo:tag\n"]

noise_scalar = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(BAD_NAMES),
)
noise = st.recursive(
    noise_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@st.composite
def hostile_spec(draw: st.DrawFn) -> bytes:
    """A spec file (bytes) with one certain problem among random valid-looking and noisy keys."""
    data: dict[str, Any] = {"name": "fuzz", "model": {"preset": "llama-3.1-8b-instruct-gptq"}}
    for key in draw(st.lists(st.sampled_from(SPEC_KEYS), max_size=3, unique=True)):
        data[key] = draw(noise)  # may be valid or not: the certain problem below decides the outcome
    kind = draw(st.sampled_from(HOSTILE_SPEC))
    if kind == "unknown key":
        key = draw(st.text(min_size=1, max_size=30).filter(lambda k: k not in SPEC_KEYS and k.strip() == k))
        data[key] = draw(noise)
        return _dump(data).encode()
    if kind == "bad port":
        data["serve"] = {"port": draw(st.sampled_from(BAD_PORTS))}
    elif kind == "bad served_name":
        data["model"] = {"preset": "llama-3.1-8b-instruct-gptq", "served_name": draw(st.sampled_from(BAD_NAMES))}
    elif kind == "bad name":
        data["name"] = draw(st.sampled_from([*BAD_NAMES, "UPPER", "a" * 64]))
    elif kind == "bad gpus":
        data["gpus"] = draw(st.sampled_from(BAD_GPUS))
    elif kind == "bad image":
        data["image"] = draw(st.sampled_from(BAD_IMAGES))
    elif kind == "bad limits":
        field = draw(st.sampled_from(["max_input_tokens", "max_total_tokens", "max_concurrent_requests"]))
        data["limits"] = {field: draw(st.sampled_from([0, -5, True, "4096", 10**30, 1.5]))}
    elif kind == "path with NUL":
        data["stack_dir"] = "stack\x00" + draw(st.text(max_size=5))
    text = _dump(data)
    if kind == "duplicate key":
        text += f"name: {draw(st.sampled_from(['a', 'b', 'fuzz']))}\n"
    elif kind == "alias bomb":
        levels = draw(st.integers(min_value=4, max_value=12))
        width = draw(st.integers(min_value=9, max_value=12))
        text += "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * width)}]\n" for i in range(levels))
    elif kind == "deep nesting":
        depth = draw(st.integers(min_value=21, max_value=20_000))
        opener = draw(st.sampled_from(["[", "{a: "]))
        closer = "]" if opener == "[" else "}"
        text += "x: " + opener * depth + "1" + closer * depth + "\n"
    elif kind == "oversized":
        text += "pad: '" + "x" * draw(st.integers(min_value=64 * 1024, max_value=200_000)) + "'\n"
    elif kind == "python tag":
        text += "name: !!python/object/apply:os.system ['touch pwned']\n"
    elif kind == "not a mapping":
        text = draw(st.sampled_from(["- a\n- b\n", "just text\n", "42\n", "[1, 2]\n"]))
    elif kind == "broken yaml":
        text += draw(st.sampled_from(["serve: [80\n", "\tport: 1\n", "a: 'unclosed\n", "? : :\n  - {\n"]))
    elif kind == "invalid utf-8":
        return text.encode() + draw(st.binary(min_size=1, max_size=20).map(lambda b: b"\xff" + b))
    return text.encode()


HOSTILE_SPEC = [
    "unknown key",
    "bad port",
    "bad served_name",
    "bad name",
    "bad gpus",
    "bad image",
    "bad limits",
    "path with NUL",
    "duplicate key",
    "alias bomb",
    "deep nesting",
    "oversized",
    "python tag",
    "not a mapping",
    "broken yaml",
    "invalid utf-8",
]

GOOD_LEVEL = {"load": 1, "ttft_ms": {"p50": 1.0, "p90": 2.0}, "itl_ms": {"p50": 1.0, "p90": 2.0}}
json_noise = st.recursive(
    st.one_of(st.booleans(), st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@st.composite
def hostile_bench(draw: st.DrawFn) -> bytes:
    """A bench result file (bytes) with one certain problem."""
    kind = draw(st.sampled_from(HOSTILE_BENCH))
    data: dict[str, Any] = {"config": {}, "levels": [dict(GOOD_LEVEL)], "extra": draw(json_noise)}
    if kind == "not an object":
        return json.dumps(draw(st.lists(json_noise, max_size=3))).encode()
    if kind == "missing section":
        del data[draw(st.sampled_from(["config", "levels"]))]
    elif kind == "levels not a list":
        data["levels"] = draw(json_noise.filter(lambda v: not isinstance(v, list)))
    elif kind == "level not an object":
        data["levels"] = [draw(st.one_of(st.integers(), st.text(), st.none(), st.lists(st.integers())))]
    elif kind == "bad load":
        data["levels"] = [{**GOOD_LEVEL, "load": draw(st.sampled_from([0, -1, "1", True, None, [1], {"a": 1}]))}]
    elif kind == "bad percentile":
        data["levels"] = [{**GOOD_LEVEL, "ttft_ms": draw(st.sampled_from([None, 5, "fast", [1], {"p50": "1"}]))}]
    elif kind == "bad number":
        data[draw(st.sampled_from(["max_qps_under_slo", "cost_per_qps"]))] = draw(
            st.sampled_from([True, "1.0", [1], {"v": 1}])
        )
    elif kind == "too many levels":
        data["levels"] = [dict(GOOD_LEVEL)] * draw(st.integers(min_value=1001, max_value=3000))
    elif kind == "long model id":
        data["info"] = {"model_id": "m" * draw(st.integers(min_value=257, max_value=5000))}
    text = json.dumps(data)
    if kind == "infinite number":
        text = text.replace('"load": 1', '"load": ' + draw(st.sampled_from(["1e400", "-1e400", "NaN", "Infinity"])))
    elif kind == "deep nesting":
        depth = draw(st.integers(min_value=2_000, max_value=200_000))
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif kind == "truncated":
        text = text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    elif kind == "invalid utf-8":
        return b"\xff\xfe" + text.encode()
    return text.encode()


HOSTILE_BENCH = [
    "not an object",
    "missing section",
    "levels not a list",
    "level not an object",
    "bad load",
    "bad percentile",
    "bad number",
    "too many levels",
    "long model id",
    "infinite number",
    "deep nesting",
    "truncated",
    "invalid utf-8",
]
