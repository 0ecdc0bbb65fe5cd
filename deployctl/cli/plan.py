"""`deployctl init`, `plan` and `render`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import echo_json, json_option, load_spec, sim_fault_option, spec_options
from deployctl.errors import PlanRefused
from deployctl.planner.memory import gib
from deployctl.planner.types import GpuBudget, Plan

BAR_WIDTH = 48


@click.command()
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=Path("deployctl.yaml"), show_default=True
)
@click.option("--name", default="my-llm", show_default=True, help="The deployment's name.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(output: Path, name: str, force: bool) -> None:
    """Write a commented starter deployctl.yaml.

    \b
    Example:
      deployctl init --name helpdesk && $EDITOR deployctl.yaml
    """
    from deployctl.ops.plan import write_starter

    write_starter(output, name, force)
    click.echo(f"wrote {output}: set model.path, then run `deployctl plan`")


def _bar(b: GpuBudget) -> str:
    parts = [("▓", b.used_by_others + b.runtime_reserve), ("█", b.weights), ("▒", b.prefill_reserve), ("░", b.kv_cache)]
    out = "".join(ch * round(n / b.total * BAR_WIDTH) for ch, n in parts)
    return "[" + out[:BAR_WIDTH].ljust(BAR_WIDTH, " ") + "]"


def format_plan(p: Plan) -> str:
    """Give the plan as text an operator reads top to bottom."""
    m = p.model
    q = m.quantization
    quant = f"{q.method.upper()} {q.bits}-bit g{q.group_size}" if q.method != "none" else m.dtype
    source = (
        f"{m.safetensors_files} safetensors file(s)"
        if m.weight_bytes_source == "safetensors"
        else "estimated from config.json"
    )
    where = f"profile {p.gpu_profile}" if p.gpu_profile else "this host (NVML)"
    lines = [
        f"Plan {p.name}: {m.name} on {p.num_shard} x {p.gpus[0].name} ({where})",
        f"  model   {m.architecture}, {m.parameters / 1e9:.1f}B parameters, {quant}, "
        f"weights {m.weight_bytes / 1e9:.1f} GB ({source}), context {m.context_length}",
        "",
        "Memory per GPU   ▓ runtime  █ weights  ▒ prefill  ░ KV cache",
    ]
    for b in p.gpus:
        lines.append(f"  GPU {b.index}  {_bar(b)} {gib(b.total)}")
        others = f"others {gib(b.used_by_others)} + " if b.used_by_others else ""
        lines.append(
            f"         {others}runtime {gib(b.runtime_reserve)} + weights {gib(b.weights)} + prefill {gib(b.prefill_reserve)}"
            f" + KV {gib(b.kv_cache)} ({b.kv_tokens} tokens) + free {gib(b.free)}"
        )
    lines += ["", "Limits"] + [f"  {r}" for r in p.reasons]
    if p.decode_floor_ms:
        lines.append(f"  decode floor: about {p.decode_floor_ms} ms per token (weights per GPU / memory bandwidth)")
    lines += ["", "Engine", f"  image  {p.engine.image}", f"  args   {' '.join(p.engine.args)}"]
    lines.append("  env    " + " ".join(f"{k}={v}" for k, v in sorted(p.engine.env.items())))
    lines.append(
        f"  serve  {p.bind}:{p.port} -> container :{p.engine.container_port}"
        + (" (API key required)" if p.api_key else "")
    )
    if p.warnings:
        lines += ["", "Warnings"] + [f"  ! {w}" for w in p.warnings]
    return "\n".join(lines)


@click.command()
@spec_options
@click.option("--simulate", is_flag=True, help="Plan as `up --simulate` would (an RTX 4090 when there is no driver).")
@json_option
def plan(as_json: bool, simulate: bool, **kwargs: Any) -> None:
    """Show the per-GPU memory plan, the chosen limits and the engine's arguments.

    \b
    Example:
      deployctl plan --gpu-model rtx4090 --gpus 2 --model ./Llama-3-70B-GPTQ
    """
    from deployctl.ops import plan as ops

    spec = load_spec(kwargs)
    try:
        p = ops.make_plan(spec, simulate=simulate)
    except PlanRefused as exc:
        if as_json:
            echo_json({"fits": False, "error": exc.message, "what_would_fit": exc.hint})
            raise click.exceptions.Exit(exc.exit_code) from None
        raise
    if as_json:
        echo_json({"fits": True, "plan_hash": p.digest(), **p.model_dump(mode="json")})
    else:
        click.echo(format_plan(p))


@click.command()
@spec_options
@click.option("--simulate", is_flag=True, help="Render the simulator in place of the engine.")
@sim_fault_option
@json_option
def render(as_json: bool, simulate: bool, faults: dict[str, str], **kwargs: Any) -> None:
    """Write the stack directory: compose.yaml, .env (mode 0600), plan.json.

    \b
    Example:
      deployctl render --gpu-model rtx4090 --gpus 2 --model ./Llama-3-70B-GPTQ --stack-dir ./stack
    """
    from deployctl.ops import owner
    from deployctl.ops import plan as ops

    spec_path = owner.spec_file(kwargs.get("spec_path"))
    spec = load_spec(kwargs)
    p = ops.make_plan(spec, simulate=simulate)
    out = ops.render_stack(spec, p, simulate=simulate, faults=faults, spec_path=spec_path)
    if as_json:
        echo_json({"stack_dir": str(out), "plan_hash": p.digest(), "simulate": simulate})
    else:
        click.echo(f"wrote {out}/compose.yaml, .env, plan.json (plan {p.digest()})")
