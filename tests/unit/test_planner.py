from __future__ import annotations

import re
from pathlib import Path

import pytest

from deployctl import models, planner, spec
from deployctl.engines import tgi
from deployctl.errors import InputError, PlanRefused
from deployctl.hardware import profiles
from deployctl.hardware.gpu import GiB

LAUNCHER_FLAGS = Path(__file__).parents[1] / "data" / "tgi" / "launcher-flags.md"


def _plan(model_dir: Path, gpus: int, **limits: int) -> planner.Plan:
    overrides = {"gpus": gpus, "model.path": str(model_dir), **{f"limits.{k}": v for k, v in limits.items()}}
    s = spec.parse("", overrides=overrides)
    return planner.plan(s, models.inspect(model_dir), profiles.host("rtx4090", gpus))


def test_70b_fits_two_4090s_with_about_20_gb_per_gpu(m70: Path) -> None:
    p = _plan(m70, 2)
    assert p.num_shard == 2
    for gpu in p.gpus:
        assert 19e9 < gpu.weights < 21e9
        assert gpu.free >= 0
        assert gpu.runtime_reserve + gpu.weights + gpu.prefill_reserve + gpu.kv_cache <= 24 * GiB
    assert p.limits.kv_cache_tokens >= p.limits.max_total_tokens
    assert "--num-shard" in p.engine.args and p.engine.env["NCCL_P2P_DISABLE"] == "1"
    assert p.engine.shm_size == "1gb"
    assert 15 < (p.decode_floor_ms or 0) < 25  # ~20 ms per token: 20 GB at 1008 GB/s


def test_70b_on_one_4090_is_refused_naming_two_gpus(m70: Path) -> None:
    with pytest.raises(PlanRefused) as err:
        _plan(m70, 1)
    assert "does not fit 1 x NVIDIA GeForce RTX 4090" in err.value.message
    assert "--gpus 2" in (err.value.hint or "")


@pytest.mark.parametrize("fixture", ["m32", "m8"])
def test_32b_and_8b_fit_one_4090(request: pytest.FixtureRequest, fixture: str) -> None:
    p = _plan(request.getfixturevalue(fixture), 1)
    assert p.num_shard == 1 and "NCCL_P2P_DISABLE" not in p.engine.env
    assert p.limits.kv_cache_tokens >= p.limits.max_total_tokens >= 4096


def test_too_long_context_is_refused_with_the_number_that_fits(m32: Path) -> None:
    with pytest.raises(PlanRefused) as err:
        _plan(m32, 1, max_total_tokens=32768, max_input_tokens=30000)
    match = re.search(r"max_total_tokens (\d+) or less fits", err.value.hint or "")
    assert match, err.value.hint
    shorter = int(match.group(1))
    assert 1024 <= shorter < 32768
    assert _plan(m32, 1, max_total_tokens=shorter).limits.max_total_tokens == shorter
    with pytest.raises(PlanRefused):
        _plan(m32, 1, max_total_tokens=shorter + 256)


def test_default_limits_shrink_to_fit_and_say_why(m32: Path) -> None:
    p = _plan(m32, 1)
    assert p.limits.max_input_tokens < p.limits.max_total_tokens
    assert p.limits.max_batch_prefill_tokens >= p.limits.max_input_tokens
    assert any("max_total_tokens" in r for r in p.reasons)


def test_a_model_too_big_for_two_cards_suggests_a_smaller_model() -> None:
    config = dict(models.catalog()["llama-3-70b-instruct-gptq"]["config"])
    config["num_hidden_layers"] = 126  # a ~110B model
    facts = models.from_config(config, "huge")
    s = spec.parse("", overrides={"gpus": 2})
    with pytest.raises(PlanRefused) as err:
        planner.plan(s, facts, profiles.host("rtx4090", 2))
    assert "a smaller model" in (err.value.hint or "")


def test_three_gpus_on_a_two_gpu_profile_is_bad_input(m8: Path) -> None:
    with pytest.raises(InputError, match="gpus: 3 but the rtx4090 profile has 2 GPUs"):
        _plan(m8, 3)


def test_every_flag_the_plan_emits_exists_in_tgi(m70: Path) -> None:
    known = set(re.findall(r"^\| (--[a-z-]+) \|", LAUNCHER_FLAGS.read_text(), re.M))
    assert set(tgi.FLAGS) <= known
    p = _plan(m70, 2)
    emitted = {a for a in p.engine.args if a.startswith("--")}
    assert emitted <= set(tgi.FLAGS)
    assert not ({"--max-input-length", "--max-input-tokens"} <= emitted)


def test_memory_used_by_another_process_limits_cuda_memory_fraction(m8: Path) -> None:
    host = profiles.host("rtx4090", 1)
    busy = host.model_copy(update={"gpus": [host.gpus[0].model_copy(update={"memory_used": 6 * GiB})]})
    p = planner.plan(spec.parse("", overrides={"model.path": str(m8)}), models.inspect(m8), busy)
    i = p.engine.args.index("--cuda-memory-fraction")
    assert float(p.engine.args[i + 1]) == pytest.approx(0.75, abs=0.01)
    assert any("another process" in w for w in p.warnings)


def test_plan_is_deterministic(m70: Path) -> None:
    assert _plan(m70, 2).canonical_json() == _plan(m70, 2).canonical_json()
