from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deployctl import gpus as profiles
from deployctl import models, planner, spec
from deployctl.engines import tgi
from deployctl.errors import InputError, PlanRefused
from deployctl.gpus.gpu import GiB

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
    # Chunked prefill: a budget below max_input_tokens is legal and leaves more for the KV cache.
    assert p.limits.max_batch_prefill_tokens in (2048, 4096)
    assert any(r.startswith("max_batch_prefill_tokens") and "chunked prefill" in r for r in p.reasons)
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


def test_memory_used_by_another_process_shrinks_the_kv_cache_once(m8: Path) -> None:
    host = profiles.host("rtx4090", 1)
    busy = host.model_copy(update={"gpus": [host.gpus[0].model_copy(update={"memory_used": 6 * GiB})]})
    s = spec.parse("", overrides={"model.path": str(m8)})
    idle, p = planner.plan(s, models.inspect(m8), host), planner.plan(s, models.inspect(m8), busy)
    # TGI measures free memory itself and keeps back 10% of the card's total, not of what is free: others'
    # 6 GiB cost the cache all of 6 GiB, and no --cuda-memory-fraction is passed (it would take the same
    # memory off a second time).
    lost = idle.gpus[0].kv_cache - p.gpus[0].kv_cache
    assert lost == pytest.approx(6 * GiB, rel=0.01)
    assert "--cuda-memory-fraction" not in p.engine.args
    assert any("another process" in w for w in p.warnings)


def test_plan_is_deterministic(m70: Path) -> None:
    assert _plan(m70, 2).canonical_json() == _plan(m70, 2).canonical_json()


# --- plans the engines accept at start-up (each engine's rule, recomputed: tests/unit/test_engine_rules.py) ----

MiB = 1024**2
RTX4090_CUDA_TOTAL = int(23.64 * GiB)  # what torch reports on an RTX 4090 (PyTorch OOM messages, design.md)


def _engine_plan(model_dir: Path, gpus: int, engine: str, **limits: int) -> planner.Plan:
    overrides = {"gpus": gpus, "engine": engine, "model.path": str(model_dir)}
    overrides.update({f"limits.{k}": v for k, v in limits.items()})
    return planner.plan(spec.parse("", overrides=overrides), models.inspect(model_dir), profiles.host("rtx4090", gpus))


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_70b_4bit_on_two_4090s_starts_and_on_one_is_refused_naming_two(
    checkpoints: dict[str, Path], engine: str
) -> None:
    model = checkpoints["Meta-Llama-3.1-70B-Instruct-AWQ-INT4"]
    p = _engine_plan(model, 2, engine)
    assert p.limits.max_total_tokens <= p.limits.kv_cache_tokens
    assert p.limits.max_total_tokens >= 4096
    with pytest.raises(PlanRefused) as err:
        _engine_plan(model, 1, engine)
    assert f"with {engine}" in err.value.message
    assert "2 GPUs fit it (use --gpus 2" in (err.value.hint or "")


def test_vllm_args_carry_every_knob_its_rule_assumed(checkpoints: dict[str, Path]) -> None:
    p = _engine_plan(checkpoints["Meta-Llama-3.1-70B-Instruct-AWQ-INT4"], 2, "vllm")
    args = p.engine.args
    for flag in ("--gpu-memory-utilization", "--kv-cache-memory-bytes", "--max-num-batched-tokens", "--max-num-seqs"):
        assert args[args.index(flag) + 1] == p.knobs[flag]
    assert int(p.knobs["--kv-cache-memory-bytes"]) == p.gpus[0].kv_cache  # the pool is exactly the plan's
    assert args[args.index("--max-model-len") + 1] == str(p.limits.max_total_tokens)
    assert "--quantization" not in args  # vLLM picks AWQ Marlin from config.json itself
    # Nothing is profiled with a fixed pool: no CUDA-graph estimate switch either way.
    assert "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS" not in p.engine.env


@pytest.mark.parametrize("name", ["Mistral-7B-Instruct-v0.3", "Qwen2.5-32B-Instruct-AWQ"])
def test_no_quantize_flag_where_the_engine_reads_it(checkpoints: dict[str, Path], name: str) -> None:
    p = _engine_plan(checkpoints[name], 1, "tgi")
    assert "--quantize" not in p.engine.args


def test_bf16_mistral_fits_one_4090_once_consolidated_is_left_out(checkpoints: dict[str, Path]) -> None:
    p = _engine_plan(checkpoints["Mistral-7B-Instruct-v0.3"], 1, "tgi")
    assert 13.4 * GiB < p.gpus[0].weights < 13.6 * GiB
    assert any("consolidated.safetensors" in w for w in p.warnings)


def test_the_checkpoint_wins_over_an_explicit_quantize(checkpoints: dict[str, Path]) -> None:
    # `deployctl init` writes quantize: gptq; a bf16 model must still not get --quantize gptq.
    model = checkpoints["Mistral-7B-Instruct-v0.3"]
    s = spec.parse("", overrides={"model.path": str(model), "model.quantize": "gptq", "gpu_model": "rtx4090"})
    p = planner.plan(s, models.inspect(model), profiles.host("rtx4090", 1))
    assert "--quantize" not in p.engine.args
    assert (
        "model.quantize: gptq is ignored: the checkpoint is unquantized bfloat16 (no flag, the engine reads it)"
        in p.warnings
    )


def test_a_prefill_budget_below_max_input_is_legal_with_chunked_prefill(m32: Path) -> None:
    p = _plan(m32, 1, max_total_tokens=6144, max_input_tokens=5000, max_batch_prefill_tokens=2048)
    assert (p.limits.max_input_tokens, p.limits.max_batch_prefill_tokens) == (5000, 2048)
    assert any("chunked prefill" in r for r in p.reasons)


def test_refusal_offers_shorter_context_then_fp8_kv_with_their_numbers(m32: Path) -> None:
    with pytest.raises(PlanRefused) as err:
        _plan(m32, 1, max_total_tokens=32768, max_input_tokens=30000)
    hint = err.value.hint or ""
    fp8 = re.search(r"--kv-cache-dtype fp8 gives (\d+) KV tokens \(max_total_tokens (\d+)\)", hint)
    assert fp8, hint
    assert hint.index("max_total_tokens") < hint.index("--kv-cache-dtype fp8")
    fp8_plan = planner.plan(
        spec.parse("", overrides={"model.path": str(m32), "limits.max_total_tokens": int(fp8.group(2))}),
        models.inspect(m32),
        profiles.host("rtx4090", 1),
        kv_cache_dtype="fp8",
    )
    assert fp8_plan.limits.kv_cache_tokens == int(fp8.group(1))
    assert fp8_plan.engine.args[fp8_plan.engine.args.index("--kv-cache-dtype") + 1] == "fp8_e4m3fn"


def test_moe_plan_says_all_experts_are_loaded(checkpoints: dict[str, Path]) -> None:
    p = _engine_plan(checkpoints["Mixtral-8x7B-Instruct-v0.1-GPTQ"], 2, "tgi")
    assert any("all 8 experts are loaded" in w for w in p.warnings)


# --- the plan command: --compare, --cost, --json on every exit code -------------------

ARTICLE_70B = "deepseek-r1-distill-llama-70b-awq"  # the seed article's model, in a build both engines load
COMPARE = ["plan", "--preset", ARTICLE_70B, "--compare", "1xrtx4090,2xrtx4090,2xa100-80gb"]
SEED_COSTS = ["--cost", "1xrtx4090=18999,2xrtx4090=33998,2xa100-80gb=74000"]  # CNY, shared/seed-claims.md


def _cli(args: list[str]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from deployctl.cli import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


def test_compare_70b_table_refuses_one_4090_and_prints_bounds_as_bounds() -> None:
    code, out, _ = _cli([*COMPARE, *SEED_COSTS])
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("1x", "2x"))}
    assert rows["1xrtx4090"].split()[1:4] == ["no:", "does", "not"]
    assert rows["2xrtx4090"].split()[1] == "yes" and rows["2xa100-80gb"].split()[1] == "yes"
    assert "1xrtx4090: deepseek-r1-distill-llama-70b-awq does not fit 1 x NVIDIA GeForce RTX 4090" in out
    # Every figure is a bound, and says which way: floors on time, ceilings on rates.
    assert re.search(r">= \d+\.\d ms/tok +>= \d+ ms .* <= [\d,]+ tok/s +<= [\d.]+ \((compute|KV)\)", rows["2xrtx4090"])
    assert "ESTIMATE" not in out and "M/D/1" in out and "deployctl bench compare" in out


def test_compare_json_is_the_same_data() -> None:
    code, out, _ = _cli([*COMPARE, *SEED_COSTS, "--json"])
    data = json.loads(out)
    assert code == 0 and data["engine"] == "tgi" and data["engine_release"] == "TGI 3.3.4-3.3.7"
    one, two, a100 = data["rows"]
    assert (one["verdict"], two["verdict"], a100["verdict"]) == ("no: does not fit", "yes", "yes")
    assert "2 GPUs fit it" in one["why"]
    # Physics, not marketing: 70B 4-bit weights do not sit in one 24 GB card (the seed claimed 34.5 GB "on" one).
    assert one["weights_per_gpu"] > 34e9
    # The floor for 2 x 4090 is about 19 ms per token: the seed's 95 ms/token is not a bandwidth limit.
    assert 18 < two["decode_floor_ms_min"] < 20
    # Faster memory, lower floor: A100 80GB's 2039 GB/s halves it.
    assert a100["decode_floor_ms_min"] < two["decode_floor_ms_min"] / 1.8
    assert two["cost_per_token_per_s_min"] == pytest.approx(33998 / two["decode_tokens_per_s_max"], rel=0.01)
    assert a100["kv_tokens"] > 10 * two["kv_tokens"]
    # Compute alone caps 1024:256 requests at under 2 QPS on two 4090s: the seed's 14.7 QPS cannot be.
    assert two["qps_limits"]["compute"] < 2 and two["qps_max"] <= two["qps_limits"]["compute"]


def test_the_decode_floor_counts_only_the_embedding_rows_a_step_reads() -> None:
    from deployctl.planner import bounds

    m = models.preset(ARTICLE_70B)
    weights = m.shard_weight_bytes(2, tied_copy=True, scales_whole=False)
    hw = bounds.Hardware(2, 1008.0, 165.2)
    floor = bounds.decode_floor_ms(m, weights, hw, context=0, tied_copy=True)
    table = 128256 * 8192 * 2 // 2  # this GPU's half of the bf16 embedding table
    assert floor == pytest.approx((weights - table + 8192 * 2) / 1008e9 * 1000)
    assert 1.0 < weights / 1008e9 * 1000 - floor < 1.1  # the ~1.04 ms the whole table would add


def test_qps_under_slo_uses_the_stated_queue() -> None:
    from deployctl.planner import bounds

    # M/D/1: at the returned rate the mean TTFT is exactly the target.
    s, target = 0.428, 0.480
    lam = bounds.ttft_qps(s, target)
    assert s + lam * s * s / (2 * (1 - lam * s)) == pytest.approx(target)
    assert bounds.ttft_qps(0.5, 0.48) == 0.0  # a prefill longer than the SLO serves nobody within it
    code, out, _ = _cli([*COMPARE, "--workload", "1024:256", "--slo-ttft", "480", "--slo-itl", "95", "--json"])
    two = json.loads(out)["rows"][1]
    assert code == 0 and two["qps_binding"] == "TTFT" and 0.4 < two["qps_max"] < 0.5
    code, out, _ = _cli([*COMPARE, "--workload", "10:10", "--json"])
    assert code == 0 and json.loads(out)["rows"][1]["qps_limits"]["compute"] > 20  # tiny requests: many more


def test_compare_shows_rows_the_engine_would_not_load_or_would_lower() -> None:
    code, out, _ = _cli(["plan", "--preset", "llama-3-70b-instruct-gptq", "--compare", "2xrtx4090", "--engine", "vllm"])
    assert code == 0
    assert re.search(r"^2xrtx4090 +no: does not load", out, re.M) and "desc_act: true with group_size 128" in out
    code, out, _ = _cli(["plan", "--preset", "llama-3-70b-instruct-gptq", "--compare", "2xrtx4090", "--json"])
    row = json.loads(out)["rows"][0]
    assert row["verdict"] == "yes" and row["max_total_tokens"] < 8192 <= 8192
    assert "refuses max_total_tokens=8192" in row["why"]


def test_compare_with_fp8_kv_doubles_the_kv_tokens() -> None:
    # vLLM keeps its batched-token budget either way (TGI may take the larger prefill once fp8 frees room).
    _, auto, _ = _cli([*COMPARE, "--engine", "vllm", "--json"])
    code, fp8, _ = _cli([*COMPARE, "--engine", "vllm", "--kv-cache-dtype", "fp8", "--json"])
    a, f = json.loads(auto)["rows"][1], json.loads(fp8)["rows"][1]
    assert code == 0 and json.loads(fp8)["kv_cache_dtype"] == "fp8"
    assert 1.95 < f["kv_tokens"] / a["kv_tokens"] < 2.05


def test_compare_with_vllm_uses_its_rule() -> None:
    code, out, _ = _cli([*COMPARE, "--engine", "vllm", "--json"])
    data = json.loads(out)
    assert code == 0 and data["engine"] == "vllm" and data["engine_release"] == "vLLM 0.30-0.33"
    assert data["rows"][1]["fits"] and not data["rows"][0]["fits"]


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["--compare", "2xrtx9999"], 2, "gpu_model 'rtx9999' is unknown"),
        (["--compare", "two4090s"], 2, "is not COUNTxGPU"),
        (["--compare", "1xrtx4090", "--cost", "1xrtx4090=cheap"], 2, "is not HOST=PRICE"),
        (["--compare", "1xrtx4090", "--cost", "2xrtx4090=1"], 2, "2xrtx4090 is not among the compared hosts"),
        (["--cost", "1xrtx4090=1"], 2, "--cost, --kv-cache-dtype, --workload and --slo-* need --compare"),
        (["--compare", "1xrtx4090", "--workload", "1024"], 2, "is not PROMPT:ANSWER tokens"),
        (["--gpu-model", "rtx4090", "--gpus", "1"], 4, "does not fit 1 x NVIDIA GeForce RTX 4090"),
        (["--gpu-model", "rtx4090", "--gpus", "3"], 2, "gpus: 3 but the rtx4090 profile has 2 GPUs"),
    ],
)
def test_plan_json_is_json_for_every_exit_code(args: list[str], code: int, error: str) -> None:
    got, out, _ = _cli(["plan", "--preset", "llama-3-70b-instruct-gptq", *args, "--json"])
    data = json.loads(out)
    assert got == code == data["exit_code"]
    assert data["fits"] is False and error in data["error"] + " " + (data["hint"] or "")


def test_on_real_gpus_the_plan_uses_nvmls_numbers(m70: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.fake_nvml import two_4090s

    from deployctl.hardware import inventory
    from deployctl.ops import planning

    monkeypatch.setattr(inventory, "NVML_LIB", two_4090s())
    p = planning.make_plan(spec.parse("", overrides={"gpus": 2, "model.path": str(m70)}))
    # NVML's 24564 MiB less the 420 MiB the idle driver holds: what CUDA can hand out.
    assert p.gpus[0].total == (24564 - 420) * MiB
    assert p.gpu_profile is None and p.decode_floor_ms is not None  # bandwidth from the catalogue by name
    assert p.limits.max_total_tokens <= p.limits.kv_cache_tokens


def test_phi3_fused_projections_and_gemma3_text_config_are_read(tmp_path: Path) -> None:
    from helpers.modelgen import nbytes, tensors, write_checkpoint

    phi3 = {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 5120,
        "intermediate_size": 17920,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 10,
        "vocab_size": 32064,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }  # microsoft/Phi-3-medium-4k-instruct config.json
    facts = models.inspect(write_checkpoint(tmp_path / "phi3", phi3))
    assert facts.weight_bytes == nbytes(tensors(phi3))
    assert 13.9e9 < facts.parameters < 14.0e9  # "14B" (13.96B)
    assert abs(facts.estimated_weight_bytes - facts.weight_bytes) / facts.weight_bytes < 0.01
    assert (
        0.49 < facts.shard_weight_bytes(2, tied_copy=True, scales_whole=False) / facts.weight_bytes < 0.51
    )  # qkv_proj, gate_up_proj split
    gemma3 = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "torch_dtype": "bfloat16",
        "text_config": {
            "model_type": "gemma3_text",
            "hidden_size": 5376,
            "intermediate_size": 21504,
            "num_hidden_layers": 62,
            "num_attention_heads": 32,
            "num_key_value_heads": 16,
            "head_dim": 128,
            "vocab_size": 262208,
            "max_position_embeddings": 131072,
        },
    }  # google/gemma-3-27b-it config.json (vision_config left out)
    g = models.from_config(gemma3, "gemma-3-27b-it")
    assert (g.num_layers, g.head_dim, g.tie_word_embeddings, g.dtype) == (62, 128, True, "bfloat16")
    assert 27e9 < g.parameters < 28e9


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_every_gpu_profile_says_where_its_numbers_come_from(name: str) -> None:
    p = profiles.PROFILES[name]
    assert p.source and p.interconnect
    # CUDA sees less than the box says (the driver keeps some), but not much less.
    assert 0.95 * p.memory_bytes < p.cuda_total < p.memory_bytes
    assert p.bandwidth_gbs > 0 and p.fp16_tflops > 0
    assert p.power.min_limit_w is not None and p.power.max_limit_w is not None
    assert p.power.min_limit_w < (p.power.default_limit_w or 0) <= p.power.max_limit_w
    assert profiles.for_name(p.marketing_name) is p
    assert profiles.profile(name.upper()) is p


@pytest.mark.parametrize(
    ("alias", "name"),
    [("RTX 4090", "rtx4090"), ("a100", "a100-80gb"), ("H100", "h100-80gb"), ("A100-40GB", "a100-40gb")],
)
def test_gpu_profiles_answer_to_the_names_people_type(alias: str, name: str) -> None:
    assert profiles.profile(alias).name == name


def test_vllm_leaves_other_processes_their_memory(m8: Path) -> None:
    host = profiles.host("rtx4090", 1)
    busy = host.model_copy(update={"gpus": [host.gpus[0].model_copy(update={"memory_used": 6 * GiB})]})
    s = spec.parse("", overrides={"model.path": str(m8), "engine": "vllm"})
    idle, p = planner.plan(s, models.inspect(m8), host), planner.plan(s, models.inspect(m8), busy)
    util = float(p.knobs["--gpu-memory-utilization"])
    # vLLM refuses to start unless utilization x total is free (request_memory); the CUDA context stays outside.
    assert util * RTX4090_CUDA_TOTAL <= RTX4090_CUDA_TOTAL - 6 * GiB - 768 * MiB
    assert util < float(idle.knobs["--gpu-memory-utilization"]) == 0.92  # vLLM's own default when it is free
    assert p.limits.kv_cache_tokens < idle.limits.kv_cache_tokens


GPTQ_COMPARE = ["plan", "--preset", "llama-3-70b-instruct-gptq", "--compare", "1xrtx4090,2xrtx4090,2xa100-80gb"]


@pytest.mark.parametrize(
    "args",
    [
        [*COMPARE, *SEED_COSTS, "--engine", "tgi"],
        [*COMPARE, *SEED_COSTS, "--engine", "vllm"],
        [*COMPARE, *SEED_COSTS, "--slo-ttft", "480", "--slo-itl", "95"],
        [*GPTQ_COMPARE, *SEED_COSTS],
        [*GPTQ_COMPARE, "--engine", "vllm"],
    ],
    ids=["tgi", "vllm", "slo", "gptq-tgi", "gptq-vllm"],
)
def test_docs_show_the_table_plan_compare_prints_today(args: list[str]) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "planner.md").read_text()
    code, out, _ = _cli(args)
    rows = [line for line in out.splitlines() if line.startswith(("host ", "1x", "2x"))]
    assert code == 0 and len(rows) == 4
    assert "\n".join(rows) in docs, "docs/planner.md's compare table is stale: paste the new output"
