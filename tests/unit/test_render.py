from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from helpers.golden import assert_golden

from deployctl import gpus as profiles
from deployctl import models, planner, spec, targets
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.stackdir import write_stack

GOLDEN = Path(__file__).parents[1] / "golden"
KEY = "golden-test-key"


def golden_plan(gpus: int, engine: str = "tgi") -> planner.Plan:
    """The plans behind the golden files: 8B on one 4090, 70B on two (with an API key): act-order GPTQ with
    TGI, the seed article's DeepSeek-R1-Distill-Llama-70B AWQ with vLLM (which refuses act-order GPTQ)."""
    preset = "llama-3.1-8b-instruct-gptq" if gpus == 1 else "llama-3-70b-instruct-gptq"
    name = "Llama-3.1-8B-Instruct-GPTQ" if gpus == 1 else "Llama-3.3-70B-Instruct-GPTQ"
    if gpus == 2 and engine == "vllm":
        preset, name = "deepseek-r1-distill-llama-70b-awq", "DeepSeek-R1-Distill-Llama-70B-AWQ"
    facts = models.preset(preset).model_copy(update={"path": f"/srv/models/{name}", "name": name})
    text = f"name: golden-{gpus}x4090\ngpus: {gpus}\n"
    if engine != "tgi":
        text = f"name: golden-{engine}-{gpus}x4090\nengine: {engine}\ngpus: {gpus}\n"
    if gpus == 2:
        text += "serve:\n  bind: 0.0.0.0\n  port: 8081\n  api_key_env: GOLDEN_KEY\n"
    return planner.plan(spec.parse(text), facts, profiles.host("rtx4090", gpus))


def files_for(gpus: int, simulate: bool = False, engine: str = "tgi") -> dict[str, bytes]:
    options = targets.RenderOptions(simulate=simulate, api_key=KEY if gpus == 2 else None)
    return targets.render(golden_plan(gpus, engine), "compose", options)


@pytest.mark.parametrize("gpus", [1, 2])
def test_golden_stack(gpus: int, update_golden: bool) -> None:
    files = files_for(gpus)
    for name in ("compose.yaml", ".env"):
        assert_golden(files[name].decode(), GOLDEN / f"{gpus}x4090" / name, update=update_golden)


def test_rendering_twice_gives_identical_bytes() -> None:
    assert files_for(2) == files_for(2)
    assert files_for(1, simulate=True) == files_for(1, simulate=True)


def test_two_gpu_service_has_what_ops_need() -> None:
    compose = yaml.safe_load(files_for(2)["compose.yaml"])
    svc = compose["services"]["engine"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["driver"] == "nvidia" and devices["device_ids"] == ["0", "1"]
    assert svc["shm_size"] == "1gb"
    assert svc["ports"] == ["0.0.0.0:8081:80"]
    model = next(v for v in svc["volumes"] if v["type"] == "bind")
    assert model["read_only"] is True and model["target"].startswith("/data/")
    assert svc["environment"]["NCCL_P2P_DISABLE"] == "1" and svc["environment"]["HF_HUB_OFFLINE"] == "1"
    assert svc["restart"] == "unless-stopped"
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["logging"]["options"]["max-size"] == "50m"
    assert "/health" in svc["healthcheck"]["test"][1]
    assert svc["labels"]["ai.deployctl.plan-hash"] == golden_plan(2).digest()
    assert KEY not in files_for(2)["compose.yaml"].decode()  # the key lives in .env only


def test_simulated_stack_keeps_ports_health_key_and_limits_but_no_gpu() -> None:
    real = yaml.safe_load(files_for(2)["compose.yaml"])["services"]["engine"]
    sim = yaml.safe_load(files_for(2, simulate=True)["compose.yaml"])["services"]["engine"]
    assert "deploy" not in sim
    for key in ("ports", "command", "restart", "security_opt"):
        assert sim[key] == real[key]
    # The same check; only the grace for loading differs (minutes for 70B, seconds simulated).
    assert sim["healthcheck"]["test"] == real["healthcheck"]["test"]
    assert int(sim["healthcheck"]["start_period"][:-1]) < int(real["healthcheck"]["start_period"][:-1])
    assert sim["environment"]["API_KEY"] == real["environment"]["API_KEY"]
    assert sim["image"] == SIM_IMAGE  # deployctl/tgi-sim:<version>; the suite runs on its own tag


def test_write_stack_env_mode_and_replacement(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    write_stack(files_for(1), target)
    assert stat.S_IMODE(os.stat(target / ".env").st_mode) == 0o600
    write_stack(files_for(2), target)
    assert b"golden-2x4090" in (target / "compose.yaml").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]


def test_a_failed_write_leaves_the_old_stack_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "stack"
    write_stack(files_for(1), target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the second file's data (a directory's fsync is not counted)
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(EnvironmentProblem, match="No space left on device"):
        write_stack(files_for(2), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]


def test_stack_dir_with_foreign_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds other files"):
        write_stack(files_for(1), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_simulator_image_is_deployctl_tgi_sim_unless_the_suite_names_its_own() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DEPLOYCTL_SIM_IMAGE"}
    code = "from deployctl.engines.simulator import SIM_IMAGE; from deployctl import __version__ as v; print(SIM_IMAGE.startswith(f'deployctl/tgi-sim:{v}-'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr
    assert SIM_IMAGE.startswith("deployctl-test/tgi-sim:run-")  # this run's own, removed at its end
