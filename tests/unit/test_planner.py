from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.checkpoints import CHECKPOINTS

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
    # TGI measures free memory itself: others' 6 GiB cost the cache 90% of 6 GiB, and no
    # --cuda-memory-fraction is passed (it would take the same memory off a second time).
    lost = idle.gpus[0].kv_cache - p.gpus[0].kv_cache
    assert lost == pytest.approx(0.9 * 6 * GiB, rel=0.01)
    assert "--cuda-memory-fraction" not in p.engine.args
    assert any("another process" in w for w in p.warnings)


def test_plan_is_deterministic(m70: Path) -> None:
    assert _plan(m70, 2).canonical_json() == _plan(m70, 2).canonical_json()


# --- plans the engines accept at start-up ------------------------------------------------

MiB = 1024**2
RTX4090_CUDA_TOTAL = int(23.64 * GiB)  # what torch reports on an RTX 4090 (PyTorch OOM messages, design.md)


def _engine_plan(model_dir: Path, gpus: int, engine: str, **limits: int) -> planner.Plan:
    overrides = {"gpus": gpus, "engine": engine, "model.path": str(model_dir)}
    overrides.update({f"limits.{k}": v for k, v in limits.items()})
    return planner.plan(spec.parse("", overrides=overrides), models.inspect(model_dir), profiles.host("rtx4090", gpus))


def _rule_tokens(p: planner.Plan) -> int:
    """The KV tokens the engine itself would allocate for this plan, recomputed from its source's arithmetic.

    TGI 3.3 flash_causal_lm.py warmup(): blocks = (free after a warm-up prefill - (1 - fraction) x total)
    x TGI_WIGGLE_ROOM (0.90) // block bytes (BLOCK_SIZE 1 with flashinfer).
    vLLM gpu_worker.determine_available_memory(): utilization x total - weights - peak activations
    - non-torch memory, in blocks of 16 tokens.
    """
    m, n, g = p.model, p.num_shard, p.gpus[0]
    inter = m.experts_per_token * m.expert_intermediate_size if m.experts else m.intermediate_size
    act_per_token = m.dtype_bytes * (
        4 * m.hidden_size + (m.num_heads + 2 * m.num_kv_heads) * m.head_dim // n + 3 * inter // n
    )
    kv_heads = -(-m.num_kv_heads // n)
    kv_per_token = 2 * m.num_layers * kv_heads * m.head_dim * (1 if p.kv_cache_dtype == "fp8" else 2)
    batch = p.limits.max_batch_prefill_tokens
    if p.engine_name == "tgi":
        runtime = 768 * MiB + (256 * MiB if n > 1 else 0)
        free = RTX4090_CUDA_TOTAL - runtime - g.weights - batch * act_per_token
        return int(free * 0.90) // kv_per_token
    runtime = 256 * MiB + (256 * MiB if n > 1 else 0)
    peak = max(batch * act_per_token, 256 * m.vocab_size * 4 * 3)
    available = int(p.memory_fraction * RTX4090_CUDA_TOTAL) - g.weights - peak - runtime
    return available // (16 * kv_per_token) * 16


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_kv_tokens_are_what_the_engine_allocates(checkpoints: dict[str, Path], name: str, engine: str) -> None:
    weights = models.inspect(checkpoints[name]).weight_bytes
    gpus = 1 if weights < 17e9 else 2
    p = _engine_plan(checkpoints[name], gpus, engine)
    rule = _rule_tokens(p)
    assert 0.9 * rule <= p.limits.kv_cache_tokens <= rule
    assert p.limits.max_total_tokens <= p.limits.kv_cache_tokens  # the router / vLLM's check passes
    assert p.limits.max_batch_prefill_tokens in (2048, 4096)


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_70b_4bit_on_two_4090s_starts_and_on_one_is_refused_naming_two(
    checkpoints: dict[str, Path], engine: str
) -> None:
    model = checkpoints["Meta-Llama-3.1-70B-Instruct-GPTQ-INT4"]
    p = _engine_plan(model, 2, engine)
    assert p.limits.max_total_tokens <= p.limits.kv_cache_tokens <= _rule_tokens(p)
    assert p.limits.max_total_tokens >= 4096
    with pytest.raises(PlanRefused) as err:
        _engine_plan(model, 1, engine)
    assert f"with {engine}" in err.value.message
    assert "2 GPUs fit it (use --gpus 2" in (err.value.hint or "")


def test_vllm_args_carry_every_knob_its_rule_assumed(checkpoints: dict[str, Path]) -> None:
    p = _engine_plan(checkpoints["Meta-Llama-3.1-70B-Instruct-AWQ-INT4"], 2, "vllm")
    args = p.engine.args
    for flag in ("--gpu-memory-utilization", "--max-num-batched-tokens", "--max-num-seqs"):
        assert args[args.index(flag) + 1] == p.knobs[flag]
    assert args[args.index("--max-model-len") + 1] == str(p.limits.max_total_tokens)
    assert "--quantization" not in args  # vLLM picks AWQ Marlin from config.json itself
    assert p.engine.env["VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS"] == "0"


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
    p = _plan(m32, 1, max_total_tokens=8192, max_input_tokens=7000, max_batch_prefill_tokens=2048)
    assert (p.limits.max_input_tokens, p.limits.max_batch_prefill_tokens) == (7000, 2048)
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


def test_a_model_that_does_not_split_is_refused_before_the_engine_asserts(tmp_path: Path) -> None:
    from helpers.modelgen import write_checkpoint

    config = {**CHECKPOINTS["Qwen2.5-72B-Instruct-GPTQ-Int4"][0], "intermediate_size": 29568}
    d = write_checkpoint(tmp_path / "unpadded", config, weights=False)
    with pytest.raises(InputError, match=r"cannot be split over 2 GPUs: down_proj has 29568 input features"):
        _engine_plan(d, 2, "tgi")


# --- the plan command: --compare, --cost, --json on every exit code -------------------

COMPARE = ["plan", "--preset", "llama-3-70b-instruct-gptq", "--compare", "1xrtx4090,2xrtx4090,2xa100-80gb"]
SEED_COSTS = ["--cost", "1xrtx4090=18999,2xrtx4090=33998,2xa100-80gb=74000"]  # CNY, shared/seed-claims.md


def _cli(args: list[str]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from deployctl.cli import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


def test_compare_70b_table_refuses_one_4090_and_marks_floors_and_estimates() -> None:
    code, out, _ = _cli([*COMPARE, *SEED_COSTS])
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("1x", "2x"))}
    assert rows["1xrtx4090"][1] == "NO" and rows["2xrtx4090"][1] == "yes" and rows["2xa100-80gb"][1] == "yes"
    assert "1xrtx4090: llama-3-70b-instruct-gptq does not fit 1 x NVIDIA GeForce RTX 4090" in out
    assert "decode FLOOR" in out and "prefill ESTIMATE" in out and "decode ESTIMATE" in out
    assert "deployctl bench compare" in out


def test_compare_json_is_the_same_data() -> None:
    code, out, _ = _cli([*COMPARE, *SEED_COSTS, "--json"])
    data = json.loads(out)
    assert code == 0 and data["engine"] == "tgi"
    one, two, a100 = data["rows"]
    assert (one["fits"], two["fits"], a100["fits"]) == (False, True, True)
    assert "2 GPUs fit it" in one["why"]
    # Physics, not marketing: 70B 4-bit weights do not sit in one 24 GB card (the seed claimed 34.5 GB "on" one).
    assert one["weights_per_gpu"] > 34e9
    # The floor for 2 x 4090 is about 20 ms per token: the seed's 95 ms/token is not a bandwidth limit.
    assert 18 < two["decode_floor_ms"] < 25
    # Faster memory, lower floor: A100 80GB's 2039 GB/s halves it.
    assert a100["decode_floor_ms"] < two["decode_floor_ms"] / 1.8
    assert two["cost_per_token_per_s"] == pytest.approx(33998 / two["decode_tokens_per_s_estimate"], rel=0.01)
    assert a100["kv_tokens"] > 10 * two["kv_tokens"]


def test_compare_with_fp8_kv_doubles_the_kv_tokens() -> None:
    _, auto, _ = _cli([*COMPARE, "--json"])
    code, fp8, _ = _cli([*COMPARE, "--kv-cache-dtype", "fp8", "--json"])
    a, f = json.loads(auto)["rows"][1], json.loads(fp8)["rows"][1]
    assert code == 0 and json.loads(fp8)["kv_cache_dtype"] == "fp8"
    assert 1.95 < f["kv_tokens"] / a["kv_tokens"] < 2.05


def test_compare_with_vllm_uses_its_rule() -> None:
    code, out, _ = _cli([*COMPARE, "--engine", "vllm", "--json"])
    data = json.loads(out)
    assert code == 0 and data["engine"] == "vllm"
    assert data["rows"][1]["fits"] and not data["rows"][0]["fits"]


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["--compare", "2xrtx9999"], 2, "gpu_model 'rtx9999' is unknown"),
        (["--compare", "two4090s"], 2, "is not COUNTxGPU"),
        (["--compare", "1xrtx4090", "--cost", "1xrtx4090=cheap"], 2, "is not HOST=PRICE"),
        (["--compare", "1xrtx4090", "--cost", "2xrtx4090=1"], 2, "2xrtx4090 is not among the compared hosts"),
        (["--cost", "1xrtx4090=1"], 2, "--cost and --kv-cache-dtype need --compare"),
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
        0.49 < facts.shard_weight_bytes(2, tied_copy=True) / facts.weight_bytes < 0.51
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
    # vLLM refuses to start unless utilization x total is free; the context and CUDA graphs need room too.
    assert util * RTX4090_CUDA_TOTAL <= RTX4090_CUDA_TOTAL - 6 * GiB - 768 * MiB - 1 * GiB
    assert util < float(idle.knobs["--gpu-memory-utilization"]) == 0.90
    assert p.limits.kv_cache_tokens < idle.limits.kv_cache_tokens
    assert p.limits.kv_cache_tokens <= _rule_tokens(p)


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_docs_show_the_table_plan_compare_prints_today(engine: str) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "planner.md").read_text()
    code, out, _ = _cli([*COMPARE, *SEED_COSTS, "--engine", engine])
    rows = [line for line in out.splitlines() if line.startswith(("host ", "1x", "2x"))]
    assert code == 0 and len(rows) == 4
    assert "\n".join(rows) in docs, "docs/planner.md's compare table is stale: paste the new output"
