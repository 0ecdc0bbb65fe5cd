from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.checkpoints import CHECKPOINTS
from helpers.checkpoints import write as write_checkpoint
from helpers.modelgen import write_model

from deployctl import models
from deployctl.errors import InputError


@pytest.mark.parametrize(("fixture", "gb_low", "gb_high"), [("m70", 39.0, 41.0), ("m32", 18.5, 20.0), ("m8", 5.4, 6.0)])
def test_exact_weight_bytes_come_from_safetensors_headers(
    request: pytest.FixtureRequest, fixture: str, gb_low: float, gb_high: float
) -> None:
    facts = models.inspect(request.getfixturevalue(fixture))
    assert facts.weight_bytes_source == "safetensors"
    assert gb_low < facts.weight_bytes / 1e9 < gb_high
    assert facts.safetensors_files >= 2
    assert facts.has_tokenizer


@pytest.mark.parametrize("fixture", ["m70", "m32", "m8"])
def test_estimate_from_config_is_within_two_percent_of_exact(request: pytest.FixtureRequest, fixture: str) -> None:
    facts = models.inspect(request.getfixturevalue(fixture))
    assert abs(facts.estimated_weight_bytes - facts.weight_bytes) / facts.weight_bytes < 0.02


def test_gptq_g128_costs_about_4_16_bits_per_quantized_weight(m70: Path) -> None:
    facts = models.inspect(m70)
    fp16 = facts.vocab_size * facts.hidden_size * 2 * 2 + (2 * facts.num_layers + 1) * facts.hidden_size * 2
    linear = (
        facts.parameters - facts.vocab_size * facts.hidden_size * 2 - (2 * facts.num_layers + 1) * facts.hidden_size
    )
    bits = (facts.weight_bytes - fp16) * 8 / linear
    assert 4.14 < bits < 4.2


def test_llama3_70b_shape_and_kv_bytes(m70: Path) -> None:
    f = models.inspect(m70)
    assert (f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == (80, 64, 8, 128)
    assert f.quantization.method == "gptq" and f.quantization.bits == 4 and f.quantization.group_size == 128
    assert f.kv_bytes_per_token() == 320 * 1024
    assert 70e9 < f.parameters < 71e9


def test_weights_absent_falls_back_to_estimate(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "qwen2.5-32b-instruct-gptq", weights=False, tokenizer=False)
    f = models.inspect(d)
    assert f.weight_bytes_source == "estimate" and not f.has_tokenizer
    assert 18.5e9 < f.weight_bytes < 20e9


def test_quantize_config_json_is_read(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "mistral-7b-instruct-gptq", weights=False)
    config = json.loads((d / "config.json").read_text())
    config.pop("quantization_config")
    (d / "config.json").write_text(json.dumps(config))
    (d / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 128, "desc_act": True, "sym": False}))
    q = models.inspect(d).quantization
    assert (q.method, q.bits, q.group_size, q.desc_act, q.sym) == ("gptq", 4, 128, True, False)


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "llama-3.1-8b-instruct-gptq")
    shard = sorted(d.glob("*.safetensors"))[0]
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size - 1)
    with pytest.raises(InputError, match="truncated"):
        models.inspect(d)


def test_unsupported_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(
        InputError, match=r"model_type: .gpt2. \(GPT2LMHeadModel\) is not supported; allowed: one of llama"
    ):
        models.inspect(tmp_path)


PUBLISHED = sorted(CHECKPOINTS)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_checkpoints_weigh_what_their_pages_say(checkpoints: dict[str, Path], name: str) -> None:
    facts = models.inspect(checkpoints[name])
    config, published_gb, _source = CHECKPOINTS[name]
    assert facts.weight_bytes_source == "safetensors"
    if published_gb is not None:
        assert abs(facts.weight_bytes / 1e9 - published_gb) / published_gb < 0.01
    # Without the files, the estimate from config.json alone lands within 1% of the real total.
    assert abs(facts.estimated_weight_bytes - facts.weight_bytes) / facts.weight_bytes < 0.01
    expected = (config.get("quantization_config") or {}).get("quant_method", "none")
    assert facts.quantization.method == expected
    # Every one of these states its method in config.json: both engines detect it, no flag is passed.
    assert facts.quantization.tgi_flag() is None and facts.quantization.vllm_flag() is None


def test_consolidated_safetensors_is_not_counted_twice(checkpoints: dict[str, Path]) -> None:
    facts = models.inspect(checkpoints["Mistral-7B-Instruct-v0.3"])
    assert 14.4e9 < facts.weight_bytes < 14.6e9
    assert facts.ignored_files == ["consolidated.safetensors"]
    assert (facts.quantization.method, facts.dtype) == ("none", "bfloat16")


def test_without_an_index_only_hf_named_shards_count(tmp_path: Path) -> None:
    d = write_checkpoint(tmp_path, "Mistral-7B-Instruct-v0.3", index=False)
    assert not (d / "model.safetensors.index.json").exists()
    facts = models.inspect(d)
    assert 14.4e9 < facts.weight_bytes < 14.6e9 and facts.ignored_files == ["consolidated.safetensors"]


def test_index_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "llama-3.1-8b-instruct-gptq")
    sorted(d.glob("model-*.safetensors"))[-1].unlink()
    with pytest.raises(InputError, match=r"weight_map names model-0000\d-of-0000\d.safetensors, which is not in"):
        models.inspect(d)


def test_mixture_of_experts_loads_every_expert(checkpoints: dict[str, Path]) -> None:
    mixtral = models.inspect(checkpoints["Mixtral-8x7B-Instruct-v0.1-GPTQ"])
    qwen = models.inspect(checkpoints["Qwen3-30B-A3B-GPTQ-Int4"])
    assert (mixtral.experts, mixtral.experts_per_token) == (8, 2)
    assert (qwen.experts, qwen.experts_per_token, qwen.expert_intermediate_size) == (128, 8, 768)
    assert 46e9 < mixtral.parameters < 47.5e9 and 12e9 < mixtral.active_parameters < 13.5e9
    assert 30e9 < qwen.parameters < 31.5e9 and 3e9 < qwen.active_parameters < 3.6e9


def test_act_order_keeps_row_parallel_scales_whole_on_every_gpu(checkpoints: dict[str, Path]) -> None:
    act = models.inspect(checkpoints["Meta-Llama-3.1-70B-Instruct-GPTQ-INT4"])
    awq = models.inspect(checkpoints["Meta-Llama-3.1-70B-Instruct-AWQ-INT4"])
    assert act.quantization.act_order and not awq.quantization.act_order
    half_act = act.shard_weight_bytes(2, tied_copy=True) - act.weight_bytes / 2
    half_awq = awq.shard_weight_bytes(2, tied_copy=True) - awq.weight_bytes / 2
    # o_proj and down_proj scales+zeros of 80 layers: (64 + 224) groups x 8192 x 2.5 bytes x 80 = ~0.47 GB, half of it extra
    assert 0.2e9 < half_act - half_awq < 0.3e9


def test_tgi_loads_a_tied_lm_head_as_a_second_copy(checkpoints: dict[str, Path]) -> None:
    gemma = models.inspect(checkpoints["gemma-2-27b-it-GPTQ"])
    embedding = 256000 * 4608 * 2
    assert gemma.tie_word_embeddings
    assert gemma.shard_weight_bytes(1, tied_copy=True) - gemma.shard_weight_bytes(1, tied_copy=False) == embedding
    assert gemma.shard_weight_bytes(1, tied_copy=False) == gemma.weight_bytes


def test_gptqmodel_quantize_config_json_needs_the_flag(tmp_path: Path) -> None:
    config = dict(CHECKPOINTS["Meta-Llama-3.1-8B-Instruct-GPTQ-INT4"][0])
    quant = config.pop("quantization_config")
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    (d / "quantize_config.json").write_text(
        json.dumps({**quant, "checkpoint_format": "gptq", "quantizer": ["gptqmodel:2.0.0"]})
    )
    q = models.inspect(d).quantization
    assert (q.method, q.source, q.tgi_flag(), q.vllm_flag()) == ("gptq", "quantize_config.json", "gptq", "gptq_marlin")


@pytest.mark.parametrize(
    ("shards", "problem"),
    [
        (1, None),
        (2, "down_proj has 29568 input features: 29568 / 2 GPUs is not a multiple of the quantization group size 128"),
    ],
)
def test_sharding_needs_whole_quantization_groups_per_gpu(shards: int, problem: str | None) -> None:
    # Qwen2.5-72B's unpadded intermediate size: 14784 per GPU is 115.5 groups of 128.
    config = {**CHECKPOINTS["Qwen2.5-72B-Instruct-GPTQ-Int4"][0], "intermediate_size": 29568}
    assert models.from_config(config, "unpadded").sharding_problem(shards) == (
        None if problem is None else problem + " (the engine asserts this when it loads the shards)"
    )
