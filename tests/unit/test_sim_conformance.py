"""The simulator answers as real vLLM 0.32.0 answered (tests/data/vllm/recorded-0.32.0.json).

The recording holds what vLLM's CPU build answered to every request of tests/helpers/conformance.py
(tests/data/vllm/record.py made it; tests/realengine/test_conformance.py compares the simulator with
the live engine as well). Here the simulator, started with the same command line, must answer the
same: status, content type, every key and value type, the values clients branch on, the stream's
events, and /metrics' families with their types and label names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import conformance

RECORDED = Path(__file__).parents[1] / "data" / "vllm" / "recorded-0.32.0.json"


def test_the_simulator_answers_every_recorded_request_as_vllm_did(capsys: pytest.CaptureFixture[str]) -> None:
    recorded = json.loads(RECORDED.read_text())
    diffs, compared = conformance.differences(recorded, conformance.simulator_record())
    with capsys.disabled():
        print(
            f"\nconformance: {compared} behaviours of vLLM {recorded['version']} compared "
            f"({len(recorded['answers'])} requests: {', '.join(recorded['answers'])}; "
            f"{len(conformance.metrics_families(recorded['metrics']))} /metrics families)"
        )
    assert not diffs, f"{len(diffs)} of {compared} differ:\n" + "\n".join(diffs)
