"""Plans the engines accept: every checkpoint fixture, both engines, held to each engine's own start-up rule.

The rules below are this test's own arithmetic, written from the engines' source at the pinned releases
(cited beside each step), not from deployctl's rule modules. What the engines cannot tell offline (the
CUDA context, NCCL's buffers, the activation peak, vLLM's non-torch growth and CUDA graphs) are
deployctl's stated estimates, restated here as numbers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from helpers.checkpoints import CHECKPOINTS

from deployctl import gpus as profiles
from deployctl import models, planner, spec
from deployctl.errors import InputError, PlanRefused
from deployctl.models import ModelFacts
from deployctl.plan import ChosenLimits

MiB, GiB = 1024**2, 1024**3
T = profiles.PROFILES["rtx4090"].cuda_total  # torch's total on an RTX 4090 (the catalogue's 23.64 GiB)

# The estimates (stated, not read from an engine): a CUDA 12 PyTorch process with its kernels; NCCL's
# buffers per rank; vLLM's non-torch growth after its snapshot; vLLM's CUDA graphs.
CONTEXT, NCCL, NON_TORCH, GRAPHS = 768 * MiB, 256 * MiB, 256 * MiB, 1 * GiB
# TGI v3.3.4-v3.3.7, server/text_generation_server/models/globals.py: TGI_WIGGLE_ROOM default "0.90".
TGI_WIGGLE = 0.90
# TGI layers/attention/flashinfer.py get_workspace: torch.empty(128 * 1024 * 1024, uint8), used in the warm-up.
FLASHINFER_WS = 128 * MiB
# vLLM 0.30.0-0.33.0 config/cache.py: gpu_memory_utilization default 0.92, DEFAULT_BLOCK_SIZE 16; 0.34.0: 64.
VLLM_UTIL, VLLM_BLOCK = 0.92, {"0.30.0": 16, "0.34.0": 64}


def act_per_token(m: ModelFacts, n: int) -> int:
    """Prefill activation bytes per token on one GPU at the MLP's peak (deployctl's stated estimate)."""
    inter = m.experts_per_token * m.expert_intermediate_size if m.experts else m.intermediate_size
    return m.dtype_bytes * (4 * m.hidden_size + (m.num_heads + 2 * m.num_kv_heads) * m.head_dim // n + 3 * inter // n)


def kv_per_token(m: ModelFacts, n: int) -> int:
    """KV bytes per token on one GPU: K and V, every layer, this GPU's (whole) KV heads, 2 bytes."""
    return 2 * m.num_layers * -(-m.num_kv_heads // n) * m.head_dim * 2


def weights_per_gpu(m: ModelFacts, n: int, engine: str) -> int:
    """Weight bytes one GPU loads, placed as each engine's loader places them.

    TGI 3.3 (layers/marlin/gptq.py GPTQMarlinWeightsLoader.get_weights_row, compressed_tensors/wna16_int.py):
    row-parallel scales whole `if self.desc_act or self.groupsize == -1`; a tied lm_head loaded again
    (TensorParallelHead from embed_tokens). vLLM 0.30+ (marlin_utils.marlin_repeat_scales_on_all_ranks):
    whole only for channelwise (group -1) GPTQ/compressed-tensors; a tied lm_head shared.
    """
    q, lay = m.quantization, m.layout
    if engine == "tgi":
        act = q.actorder == "group" if q.method == "compressed-tensors" else bool(q.desc_act)
        whole = q.method != "none" and (act or q.group_size is None)
        embedding = lay.embedding + lay.tied_embedding
    else:
        whole = q.method in ("gptq", "compressed-tensors") and q.group_size is None
        embedding = lay.embedding
    kv = lay.kv * -(-m.num_kv_heads // n) // m.num_kv_heads
    return lay.split // n + kv + (lay.row_scales if whole else lay.row_scales // n) + embedding // n + lay.replicated


def tgi_kv_tokens(m: ModelFacts, n: int, prefill: int) -> int:
    """TGI 3.3 FlashCausalLM.warmup(): blocks = get_free_memory(device, MEMORY_FRACTION * TGI_WIGGLE_ROOM)
    // block bytes, where get_cuda_free_memory = max(0, free - (1 - fraction) x total) and free is what
    is left after the weights and the warm-up prefill's peak; BLOCK_SIZE 1 (flashinfer, head size 128)."""
    used = (
        CONTEXT + (NCCL if n > 1 else 0) + FLASHINFER_WS + weights_per_gpu(m, n, "tgi") + prefill * act_per_token(m, n)
    )
    free = T - used
    return int(max(0.0, free - (1 - 1.0 * TGI_WIGGLE) * T) // kv_per_token(m, n))


def tgi_starts(m: ModelFacts, n: int, lim: ChosenLimits) -> bool:
    """TGI's router (backends/v3/src/lib.rs, main.rs) and warm-up (client/grpc_client.rs warmup): max_input <
    max_total <= KV tokens, prefill <= KV tokens, and the warm-up batch (requests of max_total - 1 KV tokens)
    fits what is free before the prefill's activations are freed."""
    kv = tgi_kv_tokens(m, n, lim.max_batch_prefill_tokens)
    prefill = lim.max_batch_prefill_tokens
    requests = math.ceil(prefill / min(lim.max_input_tokens, prefill))
    before = T - CONTEXT - (NCCL if n > 1 else 0) - FLASHINFER_WS - weights_per_gpu(m, n, "tgi")
    warmup_fits = requests * (lim.max_total_tokens - 1) * kv_per_token(m, n) <= before - prefill * act_per_token(m, n)
    return lim.max_input_tokens < lim.max_total_tokens <= kv and prefill <= kv and warmup_fits


def vllm_default_kv_tokens(m: ModelFacts, n: int, batched: int, seqs: int, block: int) -> int:
    """vLLM 0.30-0.33 at its defaults (gpu_worker.determine_available_memory, mem_utils.memory_profiling):
    ceil(0.92 x total) - weights - max(forward peak, sampler peak over max_num_seqs x vocab fp32 x 3)
    - non-torch growth - the CUDA-graph estimate (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1), in blocks."""
    requested = math.ceil(VLLM_UTIL * T)
    peak = max(batched * act_per_token(m, n), seqs * m.vocab_size * 4 * 3)
    kv = requested - weights_per_gpu(m, n, "vllm") - peak - NON_TORCH - GRAPHS
    return max(0, kv) // (block * kv_per_token(m, n)) * block


def vllm_loads(m: ModelFacts) -> bool:
    """gptq_utils.normalize_and_validate_gptq_desc_act, AutoGPTQConfig.TYPE_MAP, compressed_tensors.py (0.30-0.34)."""
    q = m.quantization
    if q.method == "gptq":
        return not (q.desc_act and q.group_size is not None) and q.sym is not False and q.bits in (4, 8)
    return not (q.method == "compressed-tensors" and q.actorder in ("group", "dynamic"))


def tgi_loads(m: ModelFacts) -> bool:
    """TGI 3.3 models/__init__.py: no qwen3 / qwen3_moe model; AutoModel refuses gptq and awq."""
    return not (m.model_type in ("qwen3", "qwen3_moe") and m.quantization.method in ("gptq", "awq"))


# Every checkpoint fixture of tests/: the published ones (helpers/checkpoints.py) and the preset-shaped model
# directories of tests/conftest.py (m70: act-order GPTQ 70B, m32, m8).
FIXTURES = [*sorted(CHECKPOINTS), "m70", "m32", "m8"]


def _fixture(request: pytest.FixtureRequest, checkpoints: dict[str, Path], name: str) -> ModelFacts:
    path = checkpoints[name] if name in CHECKPOINTS else request.getfixturevalue(name)
    return models.inspect(path)


def _plan(model: ModelFacts, n: int, engine: str, **more: object) -> planner.Plan:
    overrides = {"gpus": n, "engine": engine, **more}
    return planner.plan(spec.parse("", overrides=overrides), model, profiles.host("rtx4090", n))


def _args(p: planner.Plan) -> dict[str, str]:
    a = p.engine.args
    return {a[i]: a[i + 1] for i in range(len(a) - 1) if a[i].startswith("--") and not a[i + 1].startswith("--")}


@pytest.mark.parametrize("gpus", [1, 2])
@pytest.mark.parametrize("name", FIXTURES)
def test_tgi_plans_are_within_its_rule_and_start(
    request: pytest.FixtureRequest, checkpoints: dict[str, Path], name: str, gpus: int
) -> None:
    m = _fixture(request, checkpoints, name)
    if not tgi_loads(m):
        with pytest.raises(PlanRefused, match=r"does not load in TGI 3\.3\.4-3\.3\.7: TGI 3\.3 has no qwen3"):
            _plan(m, gpus, "tgi")
        return
    try:
        p = _plan(m, gpus, "tgi")
    except PlanRefused:
        # Refused only where TGI's own rule leaves no room for 1024 tokens even at the smaller prefill.
        assert tgi_kv_tokens(m, gpus, 2048) < 1024, "deployctl refused a plan TGI would start"
        return
    rule = tgi_kv_tokens(m, gpus, p.limits.max_batch_prefill_tokens)
    assert 0.90 * rule <= p.limits.kv_cache_tokens <= rule
    assert tgi_starts(m, gpus, p.limits), f"TGI refuses max_total_tokens={p.limits.max_total_tokens} ({rule} KV)"
    assert p.gpus[0].weights == weights_per_gpu(m, gpus, "tgi")


@pytest.mark.parametrize("release", ["0.30.0", "0.34.0"])
@pytest.mark.parametrize("gpus", [1, 2])
@pytest.mark.parametrize("name", FIXTURES)
def test_vllm_plans_pin_the_pool_and_start(
    request: pytest.FixtureRequest, checkpoints: dict[str, Path], name: str, gpus: int, release: str
) -> None:
    m = _fixture(request, checkpoints, name)
    image = f"vllm/vllm-openai:v{release}"
    if not vllm_loads(m):
        with pytest.raises(PlanRefused, match="does not load in vLLM"):
            _plan(m, gpus, "vllm", image=image)
        return
    block = VLLM_BLOCK[release]
    try:
        p = _plan(m, gpus, "vllm", image=image)
    except PlanRefused:
        assert vllm_default_kv_tokens(m, gpus, 2048, 256, block) < 1024 + 2 * block
        return
    a = _args(p)
    pool, util = int(a["--kv-cache-memory-bytes"]), float(a["--gpu-memory-utilization"])
    bpb = block * kv_per_token(m, gpus)
    # With --kv-cache-memory-bytes, determine_available_memory returns it unprofiled: floor(B / block) blocks.
    assert pool % bpb == 0 and p.limits.kv_cache_tokens == pool // bpb * block
    # Within 0.90-1.00 of what vLLM would give itself at its defaults (so the memory adds up as vLLM's own).
    default = vllm_default_kv_tokens(m, gpus, int(a["--max-num-batched-tokens"]), int(a["--max-num-seqs"]), block)
    assert 0.90 * default <= p.limits.kv_cache_tokens <= default
    # request_memory: free at start (total - context - NCCL) must be at least ceil(util x total).
    assert math.ceil(util * T) <= T - CONTEXT - (NCCL if gpus > 1 else 0)
    # _check_enough_kv_cache_memory: cdiv(max_model_len, block) blocks within the pool less the null block.
    assert math.ceil(int(a["--max-model-len"]) / block) <= pool // bpb - 1
    assert int(a["--max-model-len"]) == p.limits.max_total_tokens


def test_the_article_70b_on_two_4090s_tgi_row_is_what_tgi_accepts() -> None:
    # The act-order GPTQ build the article used: TGI's rule gives ~7,150 KV tokens at prefill 2048, so the
    # plan lowers max_total_tokens below 8192 (TGI: "Not enough memory to handle `max_total_tokens=8192`").
    gptq = models.preset("llama-3-70b-instruct-gptq")
    p = _plan(gptq, 2, "tgi")
    assert p.limits.max_total_tokens <= tgi_kv_tokens(gptq, 2, p.limits.max_batch_prefill_tokens) <= 7900
    assert p.limits.max_total_tokens < 8192 and tgi_starts(gptq, 2, p.limits)
    awq = models.preset("deepseek-r1-distill-llama-70b-awq")
    a = _plan(awq, 2, "tgi")
    assert tgi_starts(awq, 2, a.limits) and a.limits.kv_cache_tokens == tgi_kv_tokens(awq, 2, 2048)


def test_vllm_refuses_act_order_gptq_naming_desc_act_and_what_loads(checkpoints: dict[str, Path]) -> None:
    from click.testing import CliRunner

    from deployctl.cli import cli

    path = checkpoints["Meta-Llama-3.1-8B-Instruct-GPTQ-INT4"]
    done = CliRunner().invoke(cli, ["plan", "--model", str(path), "--gpu-model", "rtx4090", "--engine", "vllm"])
    assert done.exit_code == 4, done.output
    assert "desc_act: true with group_size 128" in done.output
    for way in ("--engine tgi", "an AWQ build", "a GPTQ build without act-order (desc_act: false)"):
        assert way in done.output
    assert _plan(models.inspect(path), 1, "tgi").limits.max_total_tokens == 8192  # TGI loads it


@pytest.mark.parametrize(
    ("quantization", "loads"),
    [
        ({"desc_act": True, "group_size": -1}, True),  # act-order with one group per channel is a no-op
        ({"desc_act": False, "dynamic": {r"+:.*down_proj.*": {"desc_act": True}}}, False),
        ({"desc_act": False, "dynamic": {r"-:.*down_proj.*": {"desc_act": True}}}, True),  # an exclusion
        ({"desc_act": True, "group_size": -1, "dynamic": {r".*mlp.*": {"group_size": 64}}}, False),
        ({"desc_act": False, "sym": False}, False),  # AutoGPTQConfig.TYPE_MAP has symmetric types only
        ({"desc_act": False, "bits": 3}, False),
    ],
)
def test_vllm_loadability_follows_its_gptq_config_checks(quantization: dict[str, object], loads: bool) -> None:
    config = dict(models.catalog()["llama-3.1-8b-instruct-gptq"]["config"])
    config["quantization_config"] = {**config["quantization_config"], **quantization}
    m = models.from_config(config, "variant")
    if loads:
        assert _plan(m, 1, "vllm").limits.max_total_tokens == 8192
    else:
        with pytest.raises(PlanRefused, match=r"does not load in vLLM 0\.30-0\.33") as err:
            _plan(m, 1, "vllm")
        assert "--engine tgi" in (err.value.hint or "")


@pytest.mark.parametrize(("actorder", "loads"), [("group", False), ("dynamic", False), ("weight", True), (None, True)])
def test_vllm_refuses_compressed_tensors_group_activation_ordering(
    checkpoints: dict[str, Path], actorder: str | None, loads: bool
) -> None:
    base = models.inspect(checkpoints["Meta-Llama-3.1-70B-Instruct-quantized.w4a16"])
    m = base.model_copy(update={"quantization": base.quantization.model_copy(update={"actorder": actorder})})
    if loads:
        assert _plan(m, 2, "vllm").limits.max_total_tokens == 8192
    else:
        with pytest.raises(PlanRefused, match=f"actorder '{actorder}'"):
            _plan(m, 2, "vllm")


def test_qwen3_presets_default_to_the_engine_that_loads_them() -> None:
    s = spec.parse("", overrides={"model.preset": "qwen3-32b-awq"})
    assert s.engine == "vllm"
    assert spec.parse("", overrides={"model.preset": "qwen3-32b-awq", "engine": "tgi"}).engine == "tgi"
    with pytest.raises(PlanRefused, match="no qwen3 model") as err:
        _plan(models.preset("qwen3-32b-awq"), 1, "tgi")
    assert "--engine vllm" in (err.value.hint or "")
    assert spec.parse("", overrides={"model.preset": "llama-3-70b-instruct-gptq"}).engine == "tgi"


@pytest.mark.parametrize("preset", sorted(models.catalog()))
def test_every_preset_loads_in_its_default_engine(preset: str) -> None:
    s = spec.parse("", overrides={"model.preset": preset, "gpus": 2})
    assert _plan(models.preset(preset), 2, s.engine).limits.max_total_tokens >= 1024


def test_vllm_034_has_blocks_of_64_and_the_same_pool_arithmetic() -> None:
    m = models.preset("deepseek-r1-distill-llama-70b-awq")
    old, new = _plan(m, 2, "vllm"), _plan(m, 2, "vllm", image="vllm/vllm-openai:v0.34.0")
    assert (old.engine_release, new.engine_release) == ("vLLM 0.30-0.33", "vLLM 0.34")
    assert old.limits.kv_cache_tokens % 16 == 0 and new.limits.kv_cache_tokens % 64 == 0
    assert 0 <= old.limits.kv_cache_tokens - new.limits.kv_cache_tokens < 64
    assert "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS" not in new.engine.env  # nothing is profiled with a pool


@pytest.mark.parametrize(
    ("engine", "image"),
    [
        ("tgi", "ghcr.io/huggingface/text-generation-inference:3.2.3"),  # wiggle room 0.93 there: another rule
        ("tgi", "ghcr.io/huggingface/text-generation-inference:latest"),
        ("tgi", "ghcr.io/huggingface/text-generation-inference:3.3.7-rocm"),
        ("vllm", "vllm/vllm-openai:v0.29.0"),  # still loads act-order GPTQ, 0.9 utilization era
        ("vllm", "vllm/vllm-openai:v0.35.0"),
    ],
)
def test_an_image_without_a_rule_is_refused_with_the_supported_releases(engine: str, image: str) -> None:
    m = models.preset("llama-3.1-8b-instruct-gptq")
    with pytest.raises(InputError) as err:
        _plan(m, 1, engine, image=image)
    supported = "3.3.4, 3.3.5, 3.3.6, 3.3.7" if engine == "tgi" else "0.30.0, 0.31.0, 0.32.0, 0.33.0, 0.34.0"
    assert f"supported: {supported}" in (err.value.hint or "") and "--unverified-engine" in (err.value.hint or "")
    guess = _plan(m, 1, engine, image=image, unverified_engine=True)
    assert guess.unverified_engine and image in guess.unverified_engine and "GUESS" in guess.unverified_engine


@pytest.mark.parametrize(
    "image", ["ghcr.io/huggingface/text-generation-inference:3.3.4", "registry.site:5000/tgi:v3.3.6"]
)
def test_every_supported_tgi_release_gets_the_33_rule(image: str) -> None:
    p = _plan(models.preset("llama-3.1-8b-instruct-gptq"), 1, "tgi", image=image)
    assert p.engine_release == "TGI 3.3.4-3.3.7" and p.unverified_engine is None and p.engine.image == image


def test_a_guessed_plan_says_so_on_every_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deployctl.cli import cli

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("image: ghcr.io/huggingface/text-generation-inference:3.4.0\n")
    args = ["plan", "--preset", "llama-3.1-8b-instruct-gptq", "--gpu-model", "rtx4090", "-f", str(spec_file)]
    runner = CliRunner()
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 2 and "supported: 3.3.4" in refused.output
    done = runner.invoke(cli, [*args, "--unverified-engine"])
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert lines[0].startswith("GUESS: ghcr.io/huggingface/text-generation-inference:3.4.0 is TGI 3.4.0")
    assert all(line.startswith("GUESS") for line in lines), [line for line in lines if not line.startswith("GUESS")]


def test_an_unshardable_checkpoint_is_does_not_fit_with_a_true_hint(tmp_path: Path) -> None:
    from helpers.modelgen import write_checkpoint

    config = {**CHECKPOINTS["Qwen2.5-72B-Instruct-GPTQ-Int4"][0], "intermediate_size": 29568}
    m = models.inspect(write_checkpoint(tmp_path / "unpadded", config, weights=False))
    with pytest.raises(PlanRefused) as err:
        _plan(m, 2, "tgi")
    assert err.value.exit_code == 4
    assert re.search(r"cannot be split over 2 GPUs: down_proj has 29568 input features", err.value.message)
    # One GPU splits it but does not hold 39 GiB of weights: the hint must not send the user there.
    assert "--gpus 1" not in (err.value.hint or "") and "padded intermediate_size" in (err.value.hint or "")
    small = {**CHECKPOINTS["Qwen2.5-7B-Instruct-GPTQ-Int4"][0], "intermediate_size": 18944 + 64}
    with pytest.raises(PlanRefused) as err:
        _plan(models.from_config(small, "odd"), 2, "tgi")
    assert err.value.hint == "use --gpus 1"
    assert _plan(models.from_config(small, "odd"), 1, "tgi").num_shard == 1


@pytest.mark.parametrize("release", ["0.30.0", "0.34.0"])
def test_vllm_keeps_the_null_block_out_of_the_max_len_check(release: str) -> None:
    from deployctl import engines
    from deployctl.engines.memory import Asked, StartupInput

    rule = engines.get("vllm").memory_rule(f"vllm/vllm-openai:v{release}")
    block = VLLM_BLOCK[release]
    pool = rule.startup_kv(
        StartupInput(
            total=T,
            used_by_others=0,
            weights=int(T * 0.9) - 8192 * 131072 - 2 * GiB,  # leaves a pool of about 8192 tokens
            shards=1,
            batch_tokens=2048,
            max_seqs=256,
            activation_bytes_per_token=1,
            logits_bytes_per_seq=1,
            kv_bytes_per_token=131072,
            memory_fraction=VLLM_UTIL,
        )
    )
    blocks = pool.kv_tokens // block
    fits = (blocks - 1) * block
    assert rule.accepts(Asked(1024, fits, 2048), pool)
    assert not rule.accepts(Asked(1024, fits + 1, 2048), pool)  # one more block than the pool less its null block


def test_a_guessed_comparison_says_so_on_every_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from deployctl.cli import cli

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("engine: vllm\nimage: vllm/vllm-openai:v0.35.0\nunverified_engine: true\n")
    args = ["plan", "-f", str(spec_file), "--preset", "deepseek-r1-distill-llama-70b-awq", "--compare", "2xrtx4090"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert "vLLM 0.35.0" in lines[0] and all(line.startswith("GUESS") for line in lines)
    assert re.search(r"^GUESS \| 2xrtx4090 +guess", done.output, re.M)
