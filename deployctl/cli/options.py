"""Options shared by the commands that read a spec, and the one function that loads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _gpus(value: str | None) -> int | list[int | str] | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    items: list[int | str] = []
    for part in value.split(","):
        part = part.strip()
        items.append(int(part) if part.isdigit() else part)
    return items


SPEC_OPTIONS = [
    click.option(
        "-f",
        "--spec",
        "spec_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Spec file (default: ./deployctl.yaml if present, else built-in defaults).",
    ),
    click.option(
        "--model", "model_path", type=click.Path(path_type=Path), help="Model directory (overrides model.path)."
    ),
    click.option("--preset", help="Plan a catalog model without weights (overrides model.preset)."),
    click.option("--gpus", help="A count (2) or GPU indices/UUIDs (0,1)."),
    click.option("--gpu-model", help="Plan for another host's GPUs, e.g. rtx4090."),
    click.option("--engine", type=click.Choice(["tgi", "vllm"]), help="Serving engine (overrides engine)."),
    click.option("--max-total-tokens", type=int, help="Overrides limits.max_total_tokens."),
    click.option("--max-input-tokens", type=int, help="Overrides limits.max_input_tokens."),
    click.option("--port", type=int, help="Overrides serve.port."),
    click.option("--bind", help="Overrides serve.bind."),
    click.option("--stack-dir", type=click.Path(path_type=Path, file_okay=False), help="Overrides stack_dir."),
]

_KEYS = {
    "model_path": "model.path",
    "preset": "model.preset",
    "gpus": "gpus",
    "gpu_model": "gpu_model",
    "engine": "engine",
    "max_total_tokens": "limits.max_total_tokens",
    "max_input_tokens": "limits.max_input_tokens",
    "port": "serve.port",
    "bind": "serve.bind",
    "stack_dir": "stack_dir",
}


def spec_options(fn: F) -> F:
    """Add the spec options to a command."""
    for option in reversed(SPEC_OPTIONS):
        fn = option(fn)
    return fn


def load_spec(kwargs: dict[str, Any]) -> Any:
    """Give the spec from the file and flags in a command's kwargs (consumed from it)."""
    from deployctl import spec

    path = kwargs.pop("spec_path", None)
    overrides: dict[str, Any] = {}
    for name, key in _KEYS.items():
        value = kwargs.pop(name, None)
        if name == "gpus":
            value = _gpus(value)
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value
    return spec.load(path, overrides)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


spec_file_option = click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Spec file whose stack_dir to use (default: ./deployctl.yaml if present).",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _faults(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        out[name.strip()] = value.strip()
    return out


sim_fault_option = click.option(
    "--sim-fault",
    "faults",
    multiple=True,
    callback=_faults,
    metavar="NAME[=VALUE]",
    help="With --simulate: rehearse a failure (crash-after=N, never-healthy, load-seconds=S).",
)
