"""Hostile inputs are refused within 2 s (timed here, not in the unit suite), as an operator runs deployctl."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.hostile import hostile_bench, hostile_spec
from hypothesis import HealthCheck, given, settings

from deployctl.cli import cli

from .conftest import deployctl

LIMIT_S = 2.0
SUPPRESS = list(HealthCheck)


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.stderr[:300]
    return elapsed


@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
@given(text=hostile_spec())
def test_every_hostile_spec_is_refused_within_2s(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    root = tmp_path_factory.mktemp("spec")
    (root / "spec.yaml").write_bytes(text)
    assert _timed(["plan", "--gpu-model", "rtx4090", "-f", str(root / "spec.yaml")]) < LIMIT_S


@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
@given(data=hostile_bench())
def test_every_hostile_bench_file_is_refused_within_2s(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("bench")
    (root / "bad.json").write_bytes(data)
    (root / "good.json").write_text('{"config": {}, "levels": []}')
    assert _timed(["bench", "compare", str(root / "good.json"), str(root / "bad.json")]) < LIMIT_S


WORST = {
    "alias bomb (billion laughs)": "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)
    ),
    "10,000-deep nesting": "x: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "60 KiB of keys": "".join(f"k{i}: [1, 2, 3]\n" for i in range(4000)),
}


@pytest.mark.parametrize("case", list(WORST))
def test_worst_specs_are_refused_within_2s_by_the_real_cli(tmp_path: Path, case: str) -> None:
    (tmp_path / "spec.yaml").write_text(WORST[case])
    start = time.perf_counter()
    done = deployctl("plan", "--gpu-model", "rtx4090", "-f", "spec.yaml", cwd=tmp_path, timeout=30)
    elapsed = time.perf_counter() - start
    assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr
    assert elapsed < LIMIT_S, f"{case}: {elapsed:.2f}s"


def test_a_50mb_spec_and_a_50mb_bench_file_are_refused_within_2s(tmp_path: Path) -> None:
    with (tmp_path / "spec.yaml").open("wb") as f:
        f.write(b"name: '" + b"x" * (50 * 1024 * 1024) + b"'\n")
    (tmp_path / "b.json").write_bytes(b'{"x": "' + b"y" * (50 * 1024 * 1024) + b'"}')
    (tmp_path / "a.json").write_text('{"config": {}, "levels": []}')
    for args in (["plan", "--gpu-model", "rtx4090", "-f", "spec.yaml"], ["bench", "compare", "a.json", "b.json"]):
        start = time.perf_counter()
        done = deployctl(*args, cwd=tmp_path, timeout=30)
        elapsed = time.perf_counter() - start
        assert done.returncode == 2 and "larger than" in done.stderr, done.stderr
        assert elapsed < LIMIT_S, f"{args[0]}: {elapsed:.2f}s"


@pytest.fixture(scope="module")
def split_bundle(tmp_path_factory: pytest.TempPathFactory, sim_image: str) -> tuple[Path, Path]:
    """A signed split bundle (of the simulator image) and its public key."""
    from helpers.tinymodel import write_spec, write_tiny_model

    d = tmp_path_factory.mktemp("split")
    spec = write_spec(d, write_tiny_model(d / "tiny-llama", files=2, mib=1))
    assert deployctl("bundle", "keygen", str(d / "key")).returncode == 0
    args = ["-f", str(spec), "--simulate", "--wheels", "none", "--sign", str(d / "key"), "--split", "16M"]
    done = deployctl("bundle", "create", *args, "-o", str(d / "llm.tar"), timeout=300)
    assert done.returncode == 0, done.stderr
    return d / "llm.tar.parts.json", d / "key.pub"


@pytest.mark.parametrize("name", ["/dev/zero", "FIFO", "../x"])
def test_bundle_verify_of_an_index_naming_a_device_a_fifo_or_another_folder_exits_2_within_5s(
    split_bundle: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    import json
    import os
    import shutil

    src_index, pub = split_bundle
    for f in src_index.parent.glob("llm.tar*"):
        shutil.copy(f, tmp_path / f.name)
    index = tmp_path / src_index.name
    data = json.loads(index.read_text())
    if name == "FIFO":
        first = tmp_path / data["parts"][0]["name"]
        first.unlink()
        os.mkfifo(first)
    else:
        data["parts"][0]["name"] = name
        index.write_text(json.dumps(data))
    for trust in (["--pubkey", str(pub)], ["--insecure-skip-signature"]):
        start = time.perf_counter()
        done = deployctl("bundle", "verify", str(index), *trust, timeout=30)
        elapsed = time.perf_counter() - start
        assert done.returncode == 2 and done.stderr.count("error: ") == 1, done.stderr
        assert elapsed < 5.0, f"{name}: {elapsed:.2f}s"
