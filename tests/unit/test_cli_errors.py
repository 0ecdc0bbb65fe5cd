"""Every user mistake: one clear line, a nonzero exit code, no traceback, nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.modelgen import write_model

from deployctl.cli import cli


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    write_model(tmp_path / "m8", "llama-3.1-8b-instruct-gptq", weights=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    (tmp_path / "bits5").mkdir()
    cfg = json.loads((tmp_path / "m8" / "config.json").read_text())
    cfg["quantization_config"]["bits"] = 5
    (tmp_path / "bits5" / "config.json").write_text(json.dumps(cfg))
    write_model(tmp_path / "trunc", "llama-3.1-8b-instruct-gptq")
    shard = sorted((tmp_path / "trunc").glob("*.safetensors"))[-1]
    os.truncate(shard, shard.stat().st_size // 2)
    (tmp_path / "a-file").write_text("x")
    specs = {
        "bad-yaml.yaml": "name: demo\nserve:\n  port: [80\n",
        "unknown-key.yaml": "name: demo\nmodle:\n  path: m8\n",
        "negative-port.yaml": "serve:\n  port: -1\n",
        "inline-key.yaml": "serve:\n  api_key: hunter2\n",
        "list.yaml": "- just\n- a list\n",
        "gpus-zero.yaml": "gpus: 0\n",
        "input-over-total.yaml": "limits:\n  max_input_tokens: 4096\n  max_total_tokens: 2048\n",
        "bad-name.yaml": "name: My Model\n",
        "key-env-unset.yaml": "serve:\n  api_key_env: NO_SUCH_KEY\n",
        "negative-power.yaml": "power:\n  limit_watts: -300\n",
        "bad-gpu-uuid.yaml": "gpus: [0, 'GPU 1']\n",
    }
    for name, text in specs.items():
        (tmp_path / name).write_text(text)
    return tmp_path


P = ["plan", "--gpu-model", "rtx4090"]
R = ["render", "--gpu-model", "rtx4090"]
CASES = {
    "malformed YAML": ([*R, "-f", "bad-yaml.yaml"], "bad-yaml.yaml:3: not valid YAML"),
    "unknown key": ([*R, "-f", "unknown-key.yaml"], "unknown-key.yaml:2: modle: unknown key"),
    "negative port": ([*R, "-f", "negative-port.yaml"], "negative-port.yaml:2: serve.port"),
    "inline api key": ([*R, "-f", "inline-key.yaml"], "never written inline"),
    "spec not a mapping": ([*P, "-f", "list.yaml"], "must be a mapping"),
    "gpus zero": ([*P, "-f", "gpus-zero.yaml"], "gpus must be at least 1"),
    "input over total": ([*P, "-f", "input-over-total.yaml"], "max_input_tokens must be smaller"),
    "bad name": ([*P, "-f", "bad-name.yaml"], "name: 'My Model' is not a safe name"),
    "negative power limit": ([*P, "-f", "negative-power.yaml"], "power.limit_watts"),
    "bad gpu uuid": ([*P, "-f", "bad-gpu-uuid.yaml"], "neither a GPU index nor a UUID"),
    "api key env unset": ([*R, "-f", "key-env-unset.yaml", "--model", "m8"], "NO_SUCH_KEY is not set"),
    "missing spec file": ([*P, "-f", "nope.yaml"], "nope.yaml: no such spec file"),
    "model dir without config.json": ([*R, "--model", "empty"], "no config.json"),
    "model dir missing": ([*R, "--model", "absent"], "does not exist"),
    "model path is a file": ([*R, "--model", "a-file"], "is not a directory"),
    "unsupported architecture": ([*R, "--model", "gpt2"], "(GPT2LMHeadModel) is not supported"),
    "unsupported bits": ([*R, "--model", "bits5"], "quantization_config.bits: 5 is not supported"),
    "truncated weights": ([*R, "--model", "trunc"], "truncated"),
    "3 gpus on a 2-gpu profile": ([*R, "--gpus", "3", "--model", "m8"], "gpus: 3 but the rtx4090 profile has 2 GPUs"),
    "unknown gpu model": (["plan", "--gpu-model", "rtx9999"], "gpu_model 'rtx9999' is unknown"),
    "unknown preset": ([*P, "--preset", "gpt-5"], "model preset 'gpt-5' is unknown"),
    "bind not an address": ([*R, "--bind", "localhost", "--model", "m8"], "not an IP address"),
    "context beyond the model": (
        [*R, "--preset", "qwen2.5-32b-instruct-gptq", "--max-total-tokens", "65536"],
        "beyond the model's context",
    ),
    "stack dir not writable": (
        [*R, "--model", "m8", "--stack-dir", "/proc/deployctl-test/stack"],
        "cannot write there",
    ),
    "stack dir under a file": ([*R, "--model", "m8", "--stack-dir", "a-file/stack"], "a part of the path is a file"),
    "does not fit": ([*R, "--preset", "llama-3-70b-instruct-gptq", "--gpus", "1"], "what would fit: 2 GPUs fit it"),
    "no driver, no profile": (["plan"], "NVIDIA driver not found"),
    "sim fault without simulate": (
        [*R, "--model", "m8", "--sim-fault", "crash-after=1"],
        "--sim-fault needs --simulate",
    ),
    "unknown sim fault": ([*R, "--simulate", "--sim-fault", "melt"], "--sim-fault melt: unknown"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_clear_line_and_changes_nothing(workdir: Path, case: str) -> None:
    args, expected = CASES[case]
    before = _files(workdir)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert _files(workdir) == before


def test_exit_codes_mean_something(workdir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, [*P, "-f", "bad-yaml.yaml"]).exit_code == 2
    assert runner.invoke(cli, ["plan"]).exit_code == 3
    assert runner.invoke(cli, [*R, "--preset", "llama-3-70b-instruct-gptq", "--gpus", "1"]).exit_code == 4
    assert runner.invoke(cli, ["plan", "--no-such-flag"]).exit_code == 2


def test_plan_json_refusal_is_machine_readable(workdir: Path) -> None:
    result = CliRunner().invoke(cli, [*P, "--preset", "llama-3-70b-instruct-gptq", "--gpus", "1", "--json"])
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["fits"] is False and "--gpus 2" in data["what_would_fit"]


def test_render_right_after_init_says_which_model_to_set(workdir: Path) -> None:
    assert CliRunner().invoke(cli, ["init", "-o", "fresh.yaml"]).exit_code == 0
    done = CliRunner().invoke(cli, ["render", "-f", "fresh.yaml", "--json"])
    doc = json.loads(done.stdout)
    assert done.exit_code == 2 and "does not exist" in doc["error"]
    assert doc["hint"] and "model.path" in doc["hint"] and "--preset" in doc["hint"]


def test_plan_says_whether_a_limit_came_from_a_flag_or_the_spec(workdir: Path) -> None:
    (workdir / "limits.yaml").write_text("limits:\n  max_total_tokens: 6144\n")
    args = ["plan", "--gpu-model", "rtx4090", "--preset", "llama-3.1-8b-instruct-gptq"]
    flag = CliRunner().invoke(cli, [*args, "--max-total-tokens", "4096"])
    assert "max_total_tokens 4096: from --max-total-tokens" in flag.output
    spec = CliRunner().invoke(cli, [*args, "-f", "limits.yaml"])
    assert "max_total_tokens 6144: from the spec" in spec.output


def test_sim_fault_help_names_every_switch() -> None:
    from deployctl.engines.simulator import FAULTS

    text = "".join(CliRunner().invoke(cli, ["up", "--help"]).output.split())  # help wraps at hyphens
    assert all(name in text for name in FAULTS), [n for n in FAULTS if n not in text]


def test_health_help_says_what_json_prints() -> None:
    text = " ".join(CliRunner().invoke(cli, ["health", "--help"]).output.split())
    assert "each check is one JSON object on one line" in text  # test_json_contract checks the one line
