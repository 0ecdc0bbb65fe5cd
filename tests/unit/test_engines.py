"""Engines as a seam: what TGI and vLLM each render, checked against their own flag lists and goldens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers.golden import assert_golden

from deployctl import engines, models, planner, spec
from deployctl import gpus as profiles
from deployctl.errors import InputError
from deployctl.targets import workload
from unit.test_render import GOLDEN, KEY, files_for, golden_plan

DATA = Path(__file__).parents[1] / "data"


def vllm_flags() -> set[str]:
    """Give every flag of `vllm serve` named in the copied flag table (tests/data/vllm/serve-flags.md)."""
    text = (DATA / "vllm" / "serve-flags.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `--")]
    return {flag for row in rows for flag in re.findall(r"`(--[a-z0-9-]+)`", row.split("|")[1])}


def service(gpus: int, engine: str = "vllm", simulate: bool = False) -> dict[str, object]:
    compose = yaml.safe_load(files_for(gpus, simulate=simulate, engine=engine)["compose.yaml"])
    svc: dict[str, object] = compose["services"]["engine"]
    return svc


@pytest.mark.parametrize("gpus", [1, 2])
def test_vllm_golden_stack(gpus: int, update_golden: bool) -> None:
    files = files_for(gpus, engine="vllm")
    for name in ("compose.yaml", ".env"):
        assert_golden(files[name].decode(), GOLDEN / f"vllm-{gpus}x4090" / name, update=update_golden)


def test_the_flag_table_was_read() -> None:
    flags = vllm_flags()
    assert {"--max-model-len", "--gpu-memory-utilization", "--served-model-name"} <= flags
    assert "--swap-space" in flags  # listed as removed: the check below must not accept it
    assert len(flags) > 30


@pytest.mark.parametrize("gpus", [1, 2])
def test_every_vllm_flag_rendered_exists_in_vllm(gpus: int) -> None:
    args = [str(a) for a in service(gpus)["command"]]  # type: ignore[attr-defined]
    rendered = {a for a in args if a.startswith("--")}
    removed = {"--swap-space"}
    assert rendered, args
    assert rendered <= vllm_flags() - removed, rendered - vllm_flags()
    assert rendered <= set(engines.get("vllm").flags), "a flag the engine module does not declare"


def test_vllm_one_gpu_maps_the_plans_limits() -> None:
    plan = golden_plan(1, "vllm")
    args = plan.engine.args
    value = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
    assert args[0] == "/data/models/Llama-3.1-8B-Instruct-GPTQ"  # the positional model path
    assert value["--served-model-name"] == "Llama-3.1-8B-Instruct-GPTQ"
    assert value["--tensor-parallel-size"] == "1"
    assert value["--max-model-len"] == str(plan.limits.max_total_tokens)
    assert value["--max-num-batched-tokens"] == str(plan.limits.max_batch_prefill_tokens)
    assert value["--max-num-seqs"] == str(plan.limits.max_concurrent_requests)
    assert value["--gpu-memory-utilization"] == plan.knobs["--gpu-memory-utilization"] == "0.92"
    assert value["--kv-cache-memory-bytes"] == plan.knobs["--kv-cache-memory-bytes"] == str(plan.gpus[0].kv_cache)
    assert "--quantization" not in args and "--disable-custom-all-reduce" not in args
    assert plan.engine.image == "vllm/vllm-openai:v0.32.0" and plan.engine.container_port == 8000


def test_vllm_two_gpus_without_p2p_turn_custom_all_reduce_off_and_get_shared_memory() -> None:
    svc = service(2)
    assert "--disable-custom-all-reduce" in svc["command"]  # type: ignore[operator]
    assert svc["shm_size"] == "8gb"
    env = svc["environment"]
    assert env["HF_HUB_OFFLINE"] == "1"  # type: ignore[index]
    assert env["VLLM_API_KEY"] == "${DEPLOYCTL_API_KEY:?the API key is missing from .env}"  # type: ignore[index]
    assert "API_KEY" not in env  # type: ignore[operator]
    # No P2P between 4090s: NCCL through host memory, as for TGI (the plan's warning names both settings).
    assert env["NCCL_P2P_DISABLE"] == "1"  # type: ignore[index]
    assert any("NCCL_P2P_DISABLE=1, --disable-custom-all-reduce" in w for w in golden_plan(2, "vllm").warnings)
    assert svc["ports"] == ["0.0.0.0:8081:8000"]
    assert f"DEPLOYCTL_API_KEY='{KEY}'" in files_for(2, engine="vllm")[".env"].decode()


def test_the_api_key_variable_is_the_engines_own() -> None:
    assert "API_KEY" in service(2, engine="tgi")["environment"]  # type: ignore[operator]
    assert "VLLM_API_KEY" in service(2, engine="vllm", simulate=True)["environment"]  # type: ignore[operator]


def test_the_simulator_stands_in_for_the_engine_it_is_told() -> None:
    svc = service(1, simulate=True)
    assert svc["environment"]["SIM_ENGINE"] == "vllm"  # type: ignore[index]
    assert svc["labels"]["ai.deployctl.engine"] == "vllm-simulator"  # type: ignore[index]
    assert "deploy" not in svc and "8000" in str(svc["healthcheck"])


def _plan(text: str) -> planner.Plan:
    facts = models.preset("llama-3.1-8b-instruct-gptq")
    return planner.plan(spec.parse(text), facts, profiles.host("rtx4090", 1))


def test_the_image_follows_the_engine_unless_the_spec_names_one() -> None:
    assert _plan("engine: tgi\n").engine.image == "ghcr.io/huggingface/text-generation-inference:3.3.7"
    assert _plan("engine: vllm\n").engine.image == "vllm/vllm-openai:v0.32.0"
    assert _plan("engine: vllm\nimage: registry.local/vllm:v0.32.0\n").engine.image == "registry.local/vllm:v0.32.0"
    assert _plan("engine: tgi\nimage: registry.local/tgi:3.3.7-slim\n").engine_release == "TGI 3.3.4-3.3.7"
    with pytest.raises(InputError, match=r"image registry\.local/vllm:site: no vLLM release"):
        _plan("engine: vllm\nimage: registry.local/vllm:site\n")
    guessed = _plan("engine: vllm\nimage: registry.local/vllm:site\nunverified_engine: true\n")
    assert guessed.engine.image == "registry.local/vllm:site" and guessed.warnings[0].startswith("GUESS")


def test_another_process_on_the_gpu_lowers_vllms_memory_share() -> None:
    from deployctl.engines import vllm

    total = int(23.64 * 1024**3)
    alone = vllm.utilization_for(total, 0, 2)
    shared = vllm.utilization_for(total, 4 * 1024**3, 2)
    assert alone == 0.92 and shared <= 0.79  # 4 GiB held elsewhere is 17% of the card


def test_an_unknown_engine_is_refused_with_the_choices() -> None:
    with pytest.raises(InputError, match="allowed: tgi, vllm"):
        engines.get("llamacpp")
    # The spec checks the name's form; the registry says which engines exist, when the plan asks it.
    with pytest.raises(InputError, match=r"engine: 'llamacpp' is not supported \(allowed: tgi, vllm\)"):
        _plan("engine: llamacpp\n")
    with pytest.raises(InputError, match=r"engine: .* is not an engine's name"):
        spec.parse("engine: Llama CPP\n")


def test_each_engine_declares_what_the_targets_need() -> None:
    from deployctl.engines import dialects
    from deployctl.engines.memory import version_of

    for name in engines.names():
        e = engines.get(name)
        assert e.name == name and e.health_path.startswith("/") and dialects.get(e.dialect.name) is e.dialect
        pinned = version_of(e.default_image)
        assert pinned is not None and e.memory_rule(e.default_image).releases.covers(pinned)
    assert workload.load_timeout_s(golden_plan(1, "vllm"), simulate=False) > workload.load_timeout_s(
        golden_plan(1, "tgi"), simulate=False
    )


def test_init_writes_a_starter_naming_both_engines_that_loads(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deployctl.cli import cli

    out = tmp_path / "deployctl.yaml"
    result = CliRunner().invoke(cli, ["init", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "engine: tgi" in text and "vllm" in text
    loaded = spec.parse(text.replace("path: ./models/my-model-gptq", "preset: llama-3.1-8b-instruct-gptq"))
    assert loaded.engine == "tgi" and loaded.image is None
    again = CliRunner().invoke(cli, ["init", "-o", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_plan_and_render_take_engine_from_the_flag(tmp_path: Path, engine: str) -> None:
    import json

    from click.testing import CliRunner

    from deployctl.cli import cli

    runner = CliRunner()
    plan = runner.invoke(cli, ["plan", "--engine", engine, "--gpu-model", "rtx4090", "--json"])
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.stdout)
    assert data["engine"]["kind"] == engine and data["engine"]["image"] == engines.get(engine).default_image
    stack = tmp_path / "stack"
    done = runner.invoke(cli, ["render", "--engine", engine, "--simulate", "--stack-dir", str(stack), "--json"])
    assert done.exit_code == 0, done.output
    compose = yaml.safe_load((stack / "compose.yaml").read_text())
    assert compose["services"]["engine"]["environment"]["SIM_ENGINE"] == engine


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_a_stack_rendered_before_plans_carried_engine_facts_still_loads(tmp_path: Path, engine: str) -> None:
    import json

    from deployctl.stackdir import read_stack, write_stack

    files = files_for(2, engine=engine)
    plan = json.loads(files["plan.json"])
    for fact in ("dialect", "api_key_env", "probe_tool", "start_budget_s", "security"):
        del plan["engine"][fact]  # as deployctl wrote plan.json before this change
    write_stack({**files, "plan.json": json.dumps(plan).encode()}, tmp_path / "stack")
    loaded = read_stack(tmp_path / "stack")
    assert loaded is not None and loaded.plan.engine == golden_plan(2, engine).engine


def test_the_power_models_the_faults_accept_are_the_simulators() -> None:
    from deployctl.engines.simulator import POWER_MODELS, parse_faults
    from deployctl.sim.power import MODELS

    assert set(POWER_MODELS) == set(MODELS)
    assert parse_faults(["power-model=rtx4090"]) == {"power-model": "rtx4090"}
    with pytest.raises(InputError, match="power-model needs one of rtx4090"):
        parse_faults(["power-model=h100"])
