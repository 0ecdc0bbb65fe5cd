"""One parser for server-sent-event lines (probe/sse.py), shared by `health` and the load generator."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployctl.probe.sse import DONE, parse_sse_line


def test_data_lines_give_their_object_and_done_ends_the_stream() -> None:
    assert parse_sse_line(b'data: {"token": {"text": "Hi"}}\n') == {"token": {"text": "Hi"}}
    assert parse_sse_line(b"data:{}\r\n") == {}  # no space after the colon is allowed too
    assert parse_sse_line(b"data: [DONE]\n") is DONE


@pytest.mark.parametrize("line", [b"\n", b": keep-alive\n", b"event: message\n", b"id: 7\n", b"retry: 100\n"])
def test_lines_without_data_give_none(line: bytes) -> None:
    assert parse_sse_line(line) is None


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"42", b"[" * 100_000])
def test_data_that_is_not_a_json_object_is_refused_in_one_line(data: bytes) -> None:
    with pytest.raises(ValueError, match="the stream sent a line that is not") as err:
        parse_sse_line(b"data: " + data + b"\n")
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


@settings(max_examples=200, derandomize=True)
@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4))
def test_any_object_comes_back_as_it_was_sent(event: dict[str, object]) -> None:
    assert parse_sse_line(b"data: " + json.dumps(event).encode() + b"\n") == event
