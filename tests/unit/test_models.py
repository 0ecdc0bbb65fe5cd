from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from helpers.checkpoints import CHECKPOINTS
from helpers.checkpoints import write as write_checkpoint
from helpers.modelgen import write_model
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deployctl import models
from deployctl.engines import tgi, vllm
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
    assert tgi.quantize_flag(facts.quantization) is None and vllm.quantization_flag(facts.quantization) is None


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


def test_tgi_keeps_act_order_row_parallel_scales_whole_on_every_gpu(checkpoints: dict[str, Path]) -> None:
    from deployctl import engines

    tgi, vllm = (engines.get(name).memory_rule(engines.get(name).default_image) for name in ("tgi", "vllm"))
    act = models.inspect(checkpoints["Meta-Llama-3.1-70B-Instruct-GPTQ-INT4"])
    awq = models.inspect(checkpoints["Meta-Llama-3.1-70B-Instruct-AWQ-INT4"])
    assert act.quantization.act_order and not awq.quantization.act_order
    # TGI's GPTQ-Marlin loader keeps them whole for desc_act; vLLM 0.30+ only for group -1 (it refuses the rest).
    assert tgi.scales_whole(act.quantization) and not vllm.scales_whole(act.quantization)
    assert not tgi.scales_whole(awq.quantization) and not vllm.scales_whole(awq.quantization)
    mixtral = models.inspect(checkpoints["Mixtral-8x7B-Instruct-v0.1-GPTQ"]).quantization  # group -1: whole in both
    assert tgi.scales_whole(mixtral) and vllm.scales_whole(mixtral)
    half_act = act.shard_weight_bytes(2, tied_copy=True, scales_whole=True) - act.weight_bytes / 2
    half_awq = awq.shard_weight_bytes(2, tied_copy=True, scales_whole=False) - awq.weight_bytes / 2
    # o_proj and down_proj scales+zeros of 80 layers: (64 + 224) groups x 8192 x 2.5 bytes x 80 = ~0.47 GB, half of it extra
    assert 0.2e9 < half_act - half_awq < 0.3e9


def test_tgi_loads_a_tied_lm_head_as_a_second_copy(checkpoints: dict[str, Path]) -> None:
    gemma = models.inspect(checkpoints["gemma-2-27b-it-GPTQ"])
    embedding = 256000 * 4608 * 2
    assert gemma.tie_word_embeddings
    with_copy = gemma.shard_weight_bytes(1, tied_copy=True, scales_whole=True)
    assert with_copy - gemma.shard_weight_bytes(1, tied_copy=False, scales_whole=True) == embedding
    assert gemma.shard_weight_bytes(1, tied_copy=False, scales_whole=True) == gemma.weight_bytes


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
    assert (q.method, q.source, tgi.quantize_flag(q), vllm.quantization_flag(q)) == (
        "gptq",
        "quantize_config.json",
        "gptq",
        "gptq_marlin",
    )


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


# --- hostile model directories: one `error:` line naming file and key, exit 2, nothing written ---

BASE = CHECKPOINTS["Meta-Llama-3.1-8B-Instruct-GPTQ-INT4"][0]


def _literal(key: str, text: str) -> str:
    """config.json text with `key` set to a raw JSON literal (Python's json reads 1e400 as inf, NaN as nan)."""
    return json.dumps({**BASE, key: "@"}).replace('"@"', text)


HOSTILE_CONFIGS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "zero layers": ({**BASE, "num_hidden_layers": 0}, "num_hidden_layers: Input should be greater than or equal to 1"),
    "negative hidden size": ({**BASE, "hidden_size": -4096}, "hidden_size: Input should be greater than or equal to 1"),
    "huge vocabulary": ({**BASE, "vocab_size": 10**12}, "vocab_size: Input should be less than or equal to 4194304"),
    "10^400 heads": (
        {**BASE, "num_attention_heads": 10**400},
        "num_attention_heads: Input should be less than or equal to 1024",
    ),
    "1e400 (infinity) layers": (
        _literal("num_hidden_layers", "1e400"),
        "num_hidden_layers: Input should be a valid integer",
    ),
    "NaN hidden size": (_literal("hidden_size", "NaN"), "hidden_size: Input should be a valid integer"),
    "string layers": ({**BASE, "num_hidden_layers": "32"}, "num_hidden_layers: Input should be a valid integer"),
    "boolean heads": ({**BASE, "num_attention_heads": True}, "num_attention_heads: Input should be a valid integer"),
    "heads not dividing hidden": (
        {**BASE, "hidden_size": 4100, "head_dim": None},
        "num_attention_heads: 32 does not divide hidden_size 4100 and there is no head_dim",
    ),
    "kv heads not dividing heads": (
        {**BASE, "num_key_value_heads": 7},
        "num_key_value_heads: 7 does not divide num_attention_heads 32",
    ),
    "list as quantization_config": (
        {**BASE, "quantization_config": [1, 2]},
        "quantization_config: a list; allowed: an object",
    ),
    "unknown quant method": (
        {**BASE, "quantization_config": {"quant_method": "bitsandbytes"}},
        "quantization_config.quant_method: 'bitsandbytes' is not supported",
    ),
    "string group size": (
        {**BASE, "quantization_config": {**BASE["quantization_config"], "group_size": "128"}},
        "quantization_config.group_size: '128' is not supported",
    ),
    "fp8 activations in compressed-tensors": (
        {
            **BASE,
            "quantization_config": {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "g": {
                        "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"},
                        "input_activations": {"num_bits": 8},
                    }
                },
            },
        },
        "quantization_config.config_groups.g.input_activations",
    ),
    "unsupported family": (
        {**BASE, "model_type": "deepseek_v3"},
        "model_type: 'deepseek_v3' (LlamaForCausalLM) is not supported; allowed: one of llama",
    ),
    # The architecture's name reaches the error line: a record separator (which splitlines() and some
    # terminals take for a line break), an escape sequence and a bidi override are shown escaped.
    "architecture with a record separator": (
        {**BASE, "architectures": ["\x1e"], "model_type": None},
        "model_type: 'None' (\\x1e) is not supported",
    ),
    "architecture with an escape sequence": (
        {**BASE, "architectures": ["\x1b]0;owned\x07X"], "model_type": "x"},
        "model_type: 'x' (\\x1b]0;owned\\x07X) is not supported",
    ),
    "architecture with a bidi override": (
        {**BASE, "architectures": ["\u202eLM"], "model_type": "x"},
        "model_type: 'x' (\\u202eLM) is not supported",
    ),
    "config is a list": ("[1, 2, 3]", "expected a JSON object, found a list"),
    "deeply nested config": ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    "not UTF-8": ("\udcff", "not UTF-8 text"),
}


def _header(entries: Any) -> bytes:
    raw = json.dumps(entries).encode() if not isinstance(entries, bytes) else entries
    return struct.pack("<Q", len(raw)) + raw


HOSTILE_HEADERS: dict[str, tuple[bytes, str]] = {
    "header is a JSON array": (_header([1, 2]), "safetensors header is a JSON list, not an object of tensors"),
    "string offsets": (
        _header({"w": {"dtype": "F16", "shape": [2], "data_offsets": ["0", "4"]}}),
        "data_offsets ['0', '4']",
    ),
    "negative offsets": (
        _header({"w": {"dtype": "F16", "shape": [2], "data_offsets": [-4, 0]}}),
        "data_offsets [-4, 0]",
    ),
    "reversed offsets": (
        _header({"w": {"dtype": "F16", "shape": [2], "data_offsets": [4, 0]}}),
        "data_offsets [4, 0] run backwards",
    ),
    "overlapping tensors": (
        _header(
            {
                "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                "b": {"dtype": "F16", "shape": [2], "data_offsets": [2, 6]},
            }
        ),
        "overlaps the tensor before it",
    ),
    "size disagrees with shape": (_header({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 4]}}), "needs 8"),
    "unknown dtype": (_header({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}), "dtype 'F128'"),
    "negative dimension": (_header({"w": {"dtype": "F16", "shape": [-2], "data_offsets": [0, 4]}}), "shape [-2]"),
    "header longer than the file": (
        struct.pack("<Q", 10**9) + b"{}",
        "not a safetensors file (header of 1000000000 bytes",
    ),
    "header not JSON": (_header(b"{nope"), "safetensors header is not valid JSON"),
    "no tensors at all": (
        _header({}),
        "model.safetensors hold 0.00 GB of weights, but config.json describes about 5.73 GB",
    ),
    "promises more data than on disk": (
        _header({"w": {"dtype": "F16", "shape": [1000], "data_offsets": [0, 2000]}}),
        "truncated",
    ),
}


def _run_plan(model_dir: Path) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from deployctl.cli import cli

    before = sorted(p.name for p in model_dir.parent.rglob("*"))
    result = CliRunner().invoke(cli, ["plan", "--gpu-model", "rtx4090", "--model", str(model_dir)])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert sorted(p.name for p in model_dir.parent.rglob("*")) == before  # nothing written
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(HOSTILE_CONFIGS))
def test_hostile_config_json_gives_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    content, expected = HOSTILE_CONFIGS[case]
    d = tmp_path / "model"
    d.mkdir()
    path = d / "config.json"
    if case == "not UTF-8":
        path.write_bytes(b'{"model_type": "\xff"}')
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    code, _, err = _run_plan(d)
    assert code == 2
    _one_error_line(err, str(path), expected)


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_safetensors_header_gives_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    data, expected = HOSTILE_HEADERS[case]
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(BASE))
    (d / "model.safetensors").write_bytes(data)
    code, _, err = _run_plan(d)
    assert code == 2
    _one_error_line(err, str(d), expected)


_JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([0, -1, 10**400, 2**63, 2**64 + 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    [
        *BASE.keys(),
        "head_dim",
        "num_local_experts",
        "num_experts",
        "num_experts_per_tok",
        "moe_intermediate_size",
        "text_config",
        "dtype",
    ]
)


@settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # examples: the profile (conftest)
@given(changes=st.dictionaries(_KEYS, _JSON, min_size=1, max_size=4))
@example(
    changes={"model_type": "no-such-family", "architectures": ["\x1e"]}
)  # found by hypothesis: printed raw, split the line
def test_generated_hostile_configs_never_crash(tmp_path: Path, changes: dict[str, Any]) -> None:
    d = tmp_path / f"m{abs(hash(json.dumps(changes, default=str))) % 10**12}"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({**BASE, **changes}))
    code, _, err = _run_plan(d)
    assert code in (0, 2, 4), (code, err)
    if code == 2:
        _one_error_line(err, str(d))


_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F16", "BF16", "I32", "F8_E4M3", "X"]) | _JSON_LEAF,
        "shape": st.lists(st.integers(min_value=-3, max_value=2**41), max_size=3) | _JSON,
        "data_offsets": st.lists(st.integers(min_value=-8, max_value=64) | _JSON_LEAF, max_size=3),
    },
)


@settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # examples: the profile (conftest)
@given(header=st.dictionaries(st.text(max_size=12), _ENTRY | _JSON, max_size=4) | _JSON, tail=st.binary(max_size=64))
def test_generated_hostile_safetensors_headers_never_crash(tmp_path: Path, header: Any, tail: bytes) -> None:
    d = tmp_path / f"m{abs(hash(repr((header, tail)))) % 10**12}"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(BASE))
    (d / "model.safetensors").write_bytes(_header(header) + tail)
    code, _, err = _run_plan(d)
    assert code in (2, 4), (code, err)  # 4: a header that is valid but holds far too little to be this model
    if code == 2:
        _one_error_line(err, str(d))


@pytest.mark.parametrize(
    ("weight_map", "expected"),
    [
        ({"w": "../../etc/passwd"}, "weight_map file: '../../etc/passwd' is not a safe name"),
        ({"w": "/etc/passwd"}, "weight_map file: '/etc/passwd' is not a safe name"),
        ({"w": 5}, "weight_map: not an object of tensor name -> file name"),
        ([1, 2], "weight_map: not an object of tensor name -> file name"),
        (
            {"w": "model-00009-of-00009.safetensors"},
            "weight_map names model-00009-of-00009.safetensors, which is not in",
        ),
    ],
)
def test_hostile_index_is_refused_before_any_file_is_opened(tmp_path: Path, weight_map: Any, expected: str) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(BASE))
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    code, _, err = _run_plan(d)
    assert code == 2
    _one_error_line(err, str(d), expected)


@pytest.mark.parametrize(
    ("weights", "actorder", "act_order"),
    [
        ({"actorder": "group"}, "group", True),
        ({"actorder": "dynamic"}, "dynamic", True),
        ({"actorder": "weight"}, "weight", False),
        ({}, None, False),
    ],
)
def test_compressed_tensors_activation_ordering_is_read_as_written(
    weights: dict[str, Any], actorder: str | None, act_order: bool
) -> None:
    from helpers.checkpoints import W4A16

    config = dict(CHECKPOINTS["Meta-Llama-3.1-70B-Instruct-quantized.w4a16"][0])
    group = dict(W4A16["config_groups"]["group_0"])  # type: ignore[index]
    w = {k: v for k, v in group["weights"].items() if k != "actorder"}
    config["quantization_config"] = {**W4A16, "config_groups": {"group_0": {**group, "weights": {**w, **weights}}}}
    q = models.from_config(config, "w4a16").quantization
    assert (q.actorder, q.act_order) == (actorder, act_order)
    assert q.desc_act is (actorder == "group")  # TGI's WNA16IntLoader: desc_act = actorder == GROUP


def test_gptqmodel_dynamic_rules_that_turn_on_act_order_are_read() -> None:
    config = dict(CHECKPOINTS["Qwen2.5-7B-Instruct-GPTQ-Int4"][0])
    base = config["quantization_config"]
    dynamic = {r"-:.*lm_head.*": {}, r"+:.*mlp\.down_proj.*": {"desc_act": True, "bits": 8}}
    q = models.from_config({**config, "quantization_config": {**base, "dynamic": dynamic}}, "d").quantization
    assert q.dynamic_act_order == r"+:.*mlp\.down_proj.*" and q.act_order and q.desc_act is False
    grouped_off = {r".*": {"desc_act": True, "group_size": -1}}  # one group per channel: no act-order to refuse
    q = models.from_config({**config, "quantization_config": {**base, "dynamic": grouped_off}}, "d").quantization
    assert q.dynamic_act_order is None and not q.act_order
