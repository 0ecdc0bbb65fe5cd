"""Every vLLM command line deployctl renders is accepted by vLLM's own parser and engine-config check.

Two sources of command lines: every vLLM golden file (Compose and Helm), and a matrix of plans made
here (1 and 2 GPUs x GPTQ, AWQ and fp16 checkpoints x auto and fp8 KV cache x an API key or none).
tests/realengine/check_args.py runs them through `vllm serve`'s parser, its serve-argument checks and
`create_engine_config` in one process of the real engine. The model argument points at a checkpoint
of the same kind built here (a golden names a 70B model that is not on this machine).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import realvllm

from deployctl import planner
from deployctl import spec as spec_mod
from deployctl.hardware import inventory
from deployctl.ops.planning import model_facts

GOLDEN = Path(__file__).parents[1] / "golden"
CHECKER = Path(__file__).parent / "check_args.py"
LONG_CONTEXT = 131072  # the stand-in checkpoints accept any max_model_len a golden asks for


@pytest.fixture(scope="module")
def stand_ins(engine: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Config-only checkpoints (config.json and tokenizer) of each kind, with a long context."""
    root = tmp_path_factory.mktemp("stand-ins")
    out = {}
    for kind in ("fp16", "gptq", "awq"):
        flag = [] if kind == "fp16" else [f"--{kind}"]
        cmd = [str(realvllm.PYTHON), str(realvllm.BUILDER), str(root / kind), *flag, "--config-only"]
        subprocess.run([*cmd, "--max-positions", str(LONG_CONTEXT)], check=True, capture_output=True, timeout=300)
        out[kind] = root / kind
    return out


def kind_of(model_arg: str) -> str:
    name = model_arg.lower()
    return "gptq" if "gptq" in name else "awq" if "awq" in name else "fp16"


def golden_cases() -> list[dict[str, object]]:
    cases = []
    for compose in sorted(GOLDEN.glob("vllm-*/compose.yaml")):
        service = yaml.safe_load(compose.read_text())["services"]["engine"]
        env = {k: str(v) for k, v in service["environment"].items() if not str(v).startswith("${")}
        cases.append({"name": f"golden {compose.parent.name}", "args": service["command"], "env": env})
    for values in sorted(GOLDEN.glob("helm-vllm-*/values.yaml")):
        engine = yaml.safe_load(values.read_text())["engine"]
        cases.append({"name": f"golden {values.parent.name}", "args": engine["args"], "env": engine["env"]})
    return cases


def plan_cases(checkpoints: dict[str, Path]) -> list[dict[str, object]]:
    cases = []
    for gpus, kind, kv, key in itertools.product((1, 2), ("gptq", "awq", "fp16"), ("auto", "fp8"), (True, False)):
        quantize = "none" if kind == "fp16" else kind
        text = f"name: m\nengine: vllm\ngpus: {gpus}\ngpu_model: rtx4090\nmodel:\n  path: {checkpoints[kind]}\n  quantize: {quantize}\n"
        spec = spec_mod.parse(text)
        host = inventory.host_for("rtx4090", gpus, None)
        plan = planner.plan(spec, model_facts(spec), host, kv_cache_dtype=kv)
        env = dict(plan.engine.env)
        if key:
            env["VLLM_API_KEY"] = "matrix-key"  # the rendered stack passes the key this way (.env or a Secret)
        name = f"{gpus} GPU {kind} kv={kv} {'key' if key else 'no key'}"
        cases.append({"name": name, "args": plan.engine.args, "env": env, "kind": kind})
    return cases


def test_every_rendered_command_line_is_accepted_by_vllm(
    checkpoints: dict[str, Path], stand_ins: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = golden_cases() + plan_cases(checkpoints)
    assert len(cases) >= 27, [c["name"] for c in cases]
    # A control the check must refuse: a check that accepts everything would pass the rest too.
    control = {"name": "control: a flag vLLM does not have", "args": ["m", "--no-such-flag", "1"], "kind": "fp16"}
    for case in [*cases, control]:
        args = [str(a) for a in case["args"]]  # type: ignore[attr-defined]
        # The positional model: the stand-in checkpoint of the same kind (the plan's own for the matrix).
        args[0] = str(stand_ins[str(case.pop("kind", None) or kind_of(args[0]))])
        case["args"] = args
    out = stand_ins["fp16"].parent / "results.json"
    done = subprocess.run(
        [str(realvllm.PYTHON), str(CHECKER), str(out)],
        input=json.dumps([*cases, control]),
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "HOME": str(stand_ins["fp16"].parent), "VLLM_NO_USAGE_STATS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *results, refused_control = json.loads(out.read_text())
    assert not refused_control["ok"] and "--no-such-flag" in refused_control["error"], refused_control
    flags = sorted({f for r in results for f in r["flags"]})
    with capsys.disabled():
        print(f"\nvLLM's parser and engine-config check: {len(results)} command lines, flags {', '.join(flags)}")
    refused = [f"{r['name']}: {r['error']}" for r in results if not r["ok"]]
    assert not refused, "\n".join(refused)
    assert {"--tensor-parallel-size", "--kv-cache-dtype", "--max-model-len"} <= set(flags)
