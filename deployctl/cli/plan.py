"""`deployctl init`, `plan` and `render`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deployctl.cli.options import folder_option, json_option, load_spec, replicas_option, sim_fault_option, spec_options
from deployctl.cli.output import echo_json
from deployctl.errors import DeployctlError, InputError, PlanRefused
from deployctl.plan import GpuBudget, Plan
from deployctl.planner.memory import gib
from deployctl.terminal import shown

if TYPE_CHECKING:
    from deployctl.planner.compare import Comparison

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
    from deployctl.ops.planning import write_starter

    write_starter(output, name, force)
    click.echo(f"wrote {output}: set model.path, then run `deployctl plan`")


def _bar(b: GpuBudget) -> str:
    parts = [
        ("▓", b.used_by_others + b.runtime_reserve),
        ("█", b.weights),
        ("▒", b.prefill_reserve),
        ("░", b.kv_cache),
        ("·", b.engine_reserve),
    ]
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
        f"Plan {p.name}: {shown(m.name, limit=None)} on {p.num_shard} x {p.gpus[0].name} ({where})",  # the model's folder name
        f"  model   {m.architecture}, {m.parameters / 1e9:.1f}B parameters, {quant}, "
        f"weights {m.weight_bytes / 1e9:.1f} GB ({source}), context {m.context_length}",
        "",
        f"Memory per GPU ({p.engine_release or p.engine_name} start-up rule)   ▓ runtime  █ weights  ▒ warm-up peak"
        "  ░ KV cache  · kept free",
    ]
    for b in p.gpus:
        lines.append(f"  GPU {b.index}  {_bar(b)} {gib(b.total)}")
        others = f"others {gib(b.used_by_others)} + " if b.used_by_others else ""
        lines.append(
            f"         {others}runtime {gib(b.runtime_reserve)} + weights {gib(b.weights)} + warm-up {gib(b.prefill_reserve)}"
            f" + KV {gib(b.kv_cache)} ({b.kv_tokens} tokens) + kept free {gib(b.engine_reserve + b.free)}"
        )
    lines += ["", "Limits"] + [f"  {r}" for r in p.reasons]
    if p.decode_floor_ms:
        lines.append(
            f"  decode FLOOR: {p.decode_floor_ms} ms per token (weights + KV read per GPU / memory bandwidth; not an estimate)"
        )
    lines.append("  knobs  " + " ".join(f"{k}={v}" for k, v in sorted(p.knobs.items())))
    lines += ["", "Engine", f"  image  {p.engine.image}", f"  args   {' '.join(p.engine.args)}"]
    lines.append("  env    " + " ".join(f"{k}={v}" for k, v in sorted(p.engine.env.items())))
    lines.append(
        f"  serve  {p.bind}:{p.port} -> container :{p.engine.container_port}"
        + (" (API key required)" if p.api_key else "")
    )
    if p.warnings:
        lines += ["", "Warnings"] + [f"  ! {w}" for w in p.warnings]
    if p.unverified_engine:
        # No line of a guessed plan may be read as a checked one, however it is cut or grepped.
        lines = [p.unverified_engine, *(f"GUESS | {line}" for line in lines)]
    return "\n".join(lines)


def _cell(value: object, suffix: str = "", bound: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"{value:,}" if isinstance(value, int | float) else str(value)
    return f"{bound}{shown}{suffix}"


def format_comparison(c: Comparison) -> str:
    """Give `plan --compare`'s table: one row per host, then why each refused host does not fit or load."""
    p, o = c.workload_prompt, c.workload_answer
    head = (
        "host",
        "fits",
        "weights/GPU",
        "KV tokens",
        "max_total",
        "decode floor",
        f"prefill {p} floor",
        "batch",
        "decode ceiling",
        "QPS ceiling (binding)",
        "cost",
        "cost per tok/s floor",
    )
    rows = [head]
    for r in c.rows:
        qps = None if r.qps_max is None else f"<= {r.qps_max:g} ({r.qps_binding})"
        rows.append(
            (
                r.host,
                r.verdict,
                gib(r.weights_per_gpu),
                _cell(r.kv_tokens),
                _cell(r.max_total_tokens),
                _cell(r.decode_floor_ms_min, " ms/tok", ">= "),
                _cell(r.prefill_ms_min, " ms", ">= "),
                _cell(r.batch),
                _cell(r.decode_tokens_per_s_max, " tok/s", "<= "),
                qps or "-",
                "-" if r.cost is None else f"{r.cost:,.0f}",
                _cell(r.cost_per_token_per_s_min, "", ">= "),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    slo = [f"TTFT {c.slo_ttft_ms:g} ms" for _ in [0] if c.slo_ttft_ms is not None]
    slo += [f"ITL {c.slo_itl_ms:g} ms" for _ in [0] if c.slo_itl_ms is not None]
    lines = [
        f"{c.model} with {c.engine_release or c.engine}, KV cache {c.kv_cache_dtype}, workload {p}:{o} tokens"
        + (f", SLO {', '.join(slo)} (mean)" if slo else ""),
        "",
    ]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    explained = [r for r in c.rows if r.why]
    if explained:
        lines += ["", "Why"] + [f"  {r.host}: {r.why}" for r in explained]
    lines += ["", "Notes"] + [f"  {n}" for n in c.notes]
    if c.unverified_engine:
        lines = [c.unverified_engine, *(f"GUESS | {line}" for line in lines)]
    return "\n".join(lines)


def _fail_json(exc: DeployctlError) -> None:
    """Fail as every command does under --json (one compact document, the error line on stderr), saying `fits`."""
    from deployctl.cli import output

    data = {"fits": False, "error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
    if isinstance(exc, PlanRefused):
        data["what_would_fit"] = exc.hint
    echo_json(data, line=True)
    click.echo(output.error_line(exc.message, exc.hint), err=True)
    raise click.exceptions.Exit(exc.exit_code)


@click.command()
@spec_options
@click.option("--simulate", is_flag=True, help="Plan as `up --simulate` would (an RTX 4090 when there is no driver).")
@click.option(
    "--compare", "hosts", metavar="HOSTS", help="Compare hosts instead: COUNTxGPU,... (e.g. 1xrtx4090,2xa100-80gb)."
)
@click.option("--cost", "costs", metavar="PRICES", help="With --compare: HOST=PRICE,... (e.g. 1xrtx4090=18999).")
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(["auto", "fp8"]),
    default="auto",
    show_default=True,
    help="With --compare: size the KV cache in fp8 (one byte per element).",
)
@click.option(
    "--workload", metavar="PROMPT:ANSWER", help="With --compare: the requests the bounds are for (default 1024:256)."
)
@click.option(
    "--slo-ttft",
    type=click.FloatRange(min=1, max=600_000),
    metavar="MS",
    help="With --compare: the mean time to first token the QPS ceiling must keep.",
)
@click.option(
    "--slo-itl",
    type=click.FloatRange(min=0.1, max=60_000),
    metavar="MS",
    help="With --compare: the time between tokens the QPS ceiling must keep.",
)
@json_option
def plan(
    as_json: bool,
    simulate: bool,
    hosts: str | None,
    costs: str | None,
    kv_cache_dtype: str,
    workload: str | None,
    slo_ttft: float | None,
    slo_itl: float | None,
    **kwargs: Any,
) -> None:
    """Show the per-GPU memory plan, the chosen limits and the engine's arguments.

    \b
    Examples:
      deployctl plan --gpu-model rtx4090 --gpus 2 --model ./Llama-3-70B-GPTQ
      deployctl plan --preset deepseek-r1-distill-llama-70b-awq --compare 1xrtx4090,2xrtx4090,2xa100-80gb --cost 1xrtx4090=18999,2xrtx4090=33998,2xa100-80gb=74000
      deployctl plan --preset deepseek-r1-distill-llama-70b-awq --engine vllm --compare 2xrtx4090,2xa100-80gb --workload 1024:256 --slo-ttft 480 --slo-itl 95
    """
    from deployctl.ops import planning

    try:
        spec = load_spec(kwargs)
        extras = costs or kv_cache_dtype != "auto" or workload or slo_ttft or slo_itl
        if extras and not hosts:
            raise InputError(
                "--cost, --kv-cache-dtype, --workload and --slo-* need --compare",
                "e.g. --compare 1xrtx4090,2xrtx4090 --cost 1xrtx4090=18999",
            )
        if hosts:
            c = planning.make_comparison(
                spec, hosts, costs, kv_cache_dtype, workload=workload, slo_ttft_ms=slo_ttft, slo_itl_ms=slo_itl
            )
            click.echo(c.model_dump_json(indent=2) if as_json else format_comparison(c))
            return
        p = planning.make_plan(spec, simulate=simulate)
    except DeployctlError as exc:
        if as_json:
            _fail_json(exc)
        raise
    if as_json:
        echo_json({"fits": True, "plan_hash": p.digest(), **p.model_dump(mode="json")})
    else:
        click.echo(format_plan(p))


@click.command()
@spec_options
@click.option("--simulate", is_flag=True, help="Render the simulator in place of the engine.")
@click.option(
    "--target", type=click.Choice(["compose", "helm"]), default="compose", show_default=True, help="What to render."
)
@folder_option("-o", "--output", help="helm: the chart directory (default ./NAME-chart); compose: same as --stack-dir.")
@replicas_option
@sim_fault_option
@json_option
def render(
    as_json: bool,
    simulate: bool,
    target: str,
    output: Path | None,
    replicas: int,
    faults: dict[str, str],
    **kwargs: Any,
) -> None:
    """Write the stack directory (compose.yaml, .env mode 0600, plan.json) or a Helm chart.

    \b
    Examples:
      deployctl render --gpu-model rtx4090 --gpus 2 --model ./Llama-3-70B-GPTQ --stack-dir ./stack
      deployctl render --target helm --gpu-model rtx4090 --gpus 2 --replicas 3 -o ./llm-chart
    """
    from deployctl.ops import owner, planning

    if target == "compose" and output is not None:
        kwargs["stack_dir"] = output
    spec_path = owner.spec_file(kwargs.get("spec_path"))
    spec = load_spec(kwargs)
    done = planning.render(
        spec,
        target=target,
        output=output if target == "helm" else None,
        simulate=simulate,
        faults=faults,
        replicas=replicas,
        spec_path=spec_path,
    )
    if target == "helm":
        if as_json:
            echo_json(
                {"chart_dir": str(done.path), "plan_hash": done.plan_hash, "simulate": simulate, "replicas": replicas}
            )
        else:
            click.echo(
                f"wrote {done.path}: Chart.yaml, values.yaml, values.schema.json, templates/ (plan {done.plan_hash})"
            )
        return
    if as_json:
        echo_json({"stack_dir": str(done.path), "plan_hash": done.plan_hash, "simulate": simulate})
    else:
        click.echo(f"wrote {done.path}/compose.yaml, .env, plan.json (plan {done.plan_hash})")
