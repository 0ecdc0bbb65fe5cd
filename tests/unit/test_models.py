from __future__ import annotations

import json
from pathlib import Path

import pytest
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
