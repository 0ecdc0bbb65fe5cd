"""The simulator is held to the live engine: the conformance requests go to real vLLM and to the simulator
started with the same command line, and every difference a client or a monitoring system would see fails.

The same requests' recorded answers (tests/data/vllm/recorded-<version>.json, which the unit suite
holds the simulator to without an engine) are compared with the live ones too: a recording that no
longer matches the engine the tier installs fails here, with `tests/data/vllm/record.py` as the fix.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import conformance, realvllm

DATA = Path(__file__).parents[1] / "data" / "vllm"


@pytest.fixture(scope="module")
def engine_record(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    work = tmp_path_factory.mktemp("conformance")
    model = checkpoints["fp16"]
    command = realvllm.EngineCommand(
        args=[str(model), *conformance.SERVE_ARGS], env={"VLLM_NO_USAGE_STATS": "1"}, model_dir=model
    )
    with realvllm.serving(command, work) as server:
        yield conformance.record(server.url)


def engine_version() -> str:
    done = subprocess.run(
        [str(realvllm.PYTHON), "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().split("+")[0]


def test_the_simulator_answers_as_the_live_engine(
    engine_record: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    diffs, compared = conformance.differences(engine_record, conformance.simulator_record())
    with capsys.disabled():
        names = ", ".join(c.name for c in conformance.REQUESTS)
        print(f"\nconformance (live vLLM vs simulator): {compared} behaviours compared; requests sent: {names}")
    assert not diffs, f"{len(diffs)} of {compared} differ:\n" + "\n".join(diffs)


def test_the_recording_still_matches_the_engine(engine_record: dict[str, object]) -> None:
    recorded = json.loads((DATA / f"recorded-{engine_version()}.json").read_text())
    diffs, compared = conformance.differences(recorded, engine_record)
    assert not diffs, (
        f"the recording differs from the engine in {len(diffs)} of {compared} (run tests/data/vllm/record.py):\n"
        + "\n".join(diffs)
    )
