"""The simulator's gate (deployctl/sim/auth.py): exact keys on every non-probe route, control routes hidden."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from helpers import simserver

from deployctl.sim import latency
from deployctl.sim.auth import key_matches
from deployctl.sim.config import SimConfig, from_args

KEY = "Sekret-7f3a9"
FAST = latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e6, itl_ms=1, itl_per_stream_ms=0)
GOOD = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    with simserver.running(SimConfig(load_seconds=0, api_key=KEY, latency=FAST, control=True)) as url:
        yield url


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    with simserver.running(SimConfig(load_seconds=0, latency=FAST)) as url:
        yield url


GEN = {"inputs": "hello", "parameters": {"max_new_tokens": 1}}
POSTS = {
    "/": GEN,
    "/generate": GEN,
    "/generate_stream": GEN,
    "/invocations": GEN,
    "/tokenize": {"inputs": "hello"},
    "/chat_tokenize": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    "/v1/completions": {"prompt": "hi", "max_tokens": 1},
    "/_sim/stall?seconds=0": {},
}


@pytest.mark.parametrize("path", list(POSTS))
@pytest.mark.parametrize(
    "header",
    [
        None,
        f"Bearer {KEY.upper()}",
        f"Bearer {KEY.lower()}",
        f"Bearer  {KEY}",
        f"Bearer {KEY}x",
        "Bearer ",
        KEY,
    ],
)
def test_every_post_route_refuses_a_missing_or_case_changed_key(keyed: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = requests.post(f"{keyed}{path}", json=POSTS[path], headers=headers, timeout=5)
    assert r.status_code == 401, (path, header, r.status_code)


@pytest.mark.parametrize("path", list(POSTS))
def test_the_exact_key_opens_every_post_route(keyed: str, path: str) -> None:
    r = requests.post(f"{keyed}{path}", json=POSTS[path], headers=GOOD, timeout=5)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])


@pytest.mark.parametrize("path", ["/", "/health", "/ping", "/info", "/metrics", "/v1/models"])
def test_probe_routes_stay_open_for_monitoring(keyed: str, path: str) -> None:
    assert requests.get(f"{keyed}{path}", timeout=5).status_code == 200


def test_unknown_routes_and_methods_need_the_key_too(keyed: str) -> None:
    assert requests.get(f"{keyed}/generate", timeout=5).status_code == 401
    assert requests.delete(f"{keyed}/health", timeout=5).status_code == 401
    assert requests.get(f"{keyed}/admin", timeout=5).status_code == 401


def test_control_routes_are_absent_without_fault_injection(plain: str) -> None:
    r = requests.post(f"{plain}/_sim/stall?seconds=30", timeout=5)
    assert r.status_code == 404
    # ... so one stray call cannot slow everyone's generations down (it did: 80x).
    assert requests.post(f"{plain}/generate", json=GEN, timeout=5).status_code == 200


def test_a_stall_call_with_a_bad_value_is_a_422_not_a_crash(keyed: str) -> None:
    for value in ("abc", "-1", "1e9", "nan"):
        r = requests.post(f"{keyed}/_sim/stall?seconds={value}", headers=GOOD, timeout=5)
        assert r.status_code == 422, value


def test_key_comparison_is_exact() -> None:
    assert key_matches(f"Bearer {KEY}", KEY)
    assert not key_matches(f"Bearer {KEY.swapcase()}", KEY)
    assert not key_matches(f"Bearer {KEY}x", KEY)
    # The scheme is case-insensitive (RFC 9110 11.1; vLLM and TGI both accept `bearer`); the key is not.
    assert key_matches(f"bearer {KEY}", KEY) and not key_matches(f"bearer {KEY.swapcase()}", KEY)
    assert not key_matches("Bearer \udcff", KEY)  # undecodable header bytes compare, never raise


def test_control_routes_follow_the_stack_env() -> None:
    assert not from_args([], env={}).control
    assert from_args([], env={"SIM_CONTROL": "1"}).control


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SIM_CRASH_AFTER": "abc"}, "SIM_CRASH_AFTER 'abc' is not a whole number"),
        ({"SIM_LOAD_SECONDS": "-5"}, "must be a finite number >= 0"),
        ({"SIM_ITL_MS": "inf"}, "must be a finite number >= 0"),
        ({"MAX_TOTAL_TOKENS": "lots"}, "MAX_TOTAL_TOKENS 'lots' is not a whole number"),
    ],
)
def test_bad_simulator_settings_stop_it_with_one_line(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SystemExit, match=expected):
        from_args([], env=env)
