"""Options shared by the commands that read a spec, and the one function that loads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class BoundedNumber(click.ParamType):
    """A flag's number checked against one of load_options' bounded types when it is parsed.

    Out of bounds, infinite or NaN, it is refused in one line naming the flag, before the command
    does anything (a power cap set, a request sent).
    """

    def __init__(self, bounds: Any) -> None:
        self.bounds = bounds
        self.name = "integer" if bounds.integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already checked where it is defined
        flag = max(param.opts, key=len) if param is not None else "value"
        return self.bounds.parse(value, flag)


def _shown(default: Any) -> dict[str, Any]:
    """Give the keywords of an option's default, shown in --help (none where it has no default)."""
    return {} if default is None else {"default": default, "show_default": True}


def bounded_option(*decls: str, bounds: Any, default: float | None = None, help: str) -> Callable[[F], F]:
    """An option whose number is checked against `bounds` (one of load_options' types) as it is parsed."""
    return click.option(*decls, type=BoundedNumber(bounds), help=help, **_shown(default))


def folder_option(*decls: str, default: Path | None = None, help: str | None = None) -> Callable[[F], F]:
    """An option naming a folder (a Path; a file there is refused)."""
    return click.option(*decls, type=click.Path(path_type=Path, file_okay=False), help=help, **_shown(default))


# Helm's engine instances: the chart's own schema (templates/helm/values.schema.json.j2) allows 0-1000.
replicas_option = click.option(
    "--replicas",
    type=click.IntRange(0, 1000),
    default=1,
    show_default=True,
    help="helm: engine instances, each on its own GPUs (0-1000, the chart's schema).",
)


def token_options(tokens: Any, *, output_default: int) -> Callable[[F], F]:
    """`--prompt-tokens` and `--output-tokens`, bounded by `tokens` (load_options.TOKENS, which the commands
    that take them import), as `bench` and `power tune` both take them."""

    def apply(f: F) -> F:
        f = click.option(
            "--output-tokens",
            type=BoundedNumber(tokens),
            help=f"Tokens to generate per request (default {output_default}, or the preset's).",
        )(f)
        return click.option(
            "--prompt-tokens",
            type=BoundedNumber(tokens),
            help="Prompt length in tokens (default 256, or the preset's).",
        )(f)

    return apply


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
    click.option("--engine", metavar="NAME", help="Serving engine, e.g. tgi or vllm (overrides engine)."),
    click.option(
        "--unverified-engine",
        is_flag=True,
        default=None,
        help="Plan an image whose release has no memory rule with the newest one, as a guess (unverified_engine).",
    ),
    click.option("--max-total-tokens", type=int, help="Overrides limits.max_total_tokens."),
    click.option("--max-input-tokens", type=int, help="Overrides limits.max_input_tokens."),
    click.option("--port", type=int, help="Overrides serve.port."),
    click.option("--bind", help="Overrides serve.bind."),
    folder_option("--stack-dir", help="Overrides stack_dir."),
]

# option name -> (spec key it overrides, the flag a user typed: errors in its value name it)
SPEC_FLAGS = {
    "model_path": ("model.path", "--model"),
    "preset": ("model.preset", "--preset"),
    "gpus": ("gpus", "--gpus"),
    "gpu_model": ("gpu_model", "--gpu-model"),
    "engine": ("engine", "--engine"),
    "unverified_engine": ("unverified_engine", "--unverified-engine"),
    "max_total_tokens": ("limits.max_total_tokens", "--max-total-tokens"),
    "max_input_tokens": ("limits.max_input_tokens", "--max-input-tokens"),
    "port": ("serve.port", "--port"),
    "bind": ("serve.bind", "--bind"),
    "stack_dir": ("stack_dir", "--stack-dir"),
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
    for name, (key, flag) in SPEC_FLAGS.items():
        raw = kwargs.pop(name, None)
        value = _gpus(raw) if name == "gpus" else raw
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value
            _check_flag(flag, raw, key, overrides[key])
    return spec.load(path, overrides, flags=dict(SPEC_FLAGS.values()))


def _check_flag(flag: str, raw: Any, key: str, value: Any) -> None:
    """Refuse a flag whose value its spec key rejects on its own, naming the flag (not the spec file)."""
    from pydantic import ValidationError

    from deployctl import spec
    from deployctl.errors import InputError

    section, _, field = key.rpartition(".")
    models: dict[str, Any] = {"": spec.DeploymentSpec, "limits": spec.Limits, "serve": spec.Serve}
    model = models.get(section)
    if model is None:
        return
    try:
        model.model_validate({field: value})
    except ValidationError as exc:
        # Only the field's own errors: a rule between fields (input below total) waits for the whole spec.
        mine = [e for e in exc.errors() if tuple(e["loc"])[:1] == (field,)]
        if mine:
            message = str(mine[0]["msg"]).removeprefix("Value error, ")
            raise InputError(f"{flag} {raw}: {message} ({key})") from None


spec_file_option = click.option(
    "-f",
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Spec file whose stack_dir to use (default: ./deployctl.yaml if present).",
)

# health, bench: whose API the endpoint speaks, when no stack's plan says (probe/dialect.py asks the endpoint).
# Names come from the registry (ops/probing.resolve_target refuses an unknown one), as the spec's do.
endpoint_engine_option = click.option(
    "--engine",
    metavar="NAME",
    default=None,
    help="The engine at --endpoint, e.g. tgi or vllm (default: the stack's, else the endpoint is asked which API it speaks).",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A callback for options in seconds: more than 0, at most a day, a real number (not nan)."""
    from deployctl.errors import InputError

    if value is not None and not 0 < value <= 86_400:
        raise InputError(f"{param.opts[0]} {value:g}: must be more than 0 and at most 86400 seconds")
    return value


def _faults(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    from deployctl.engines.simulator import parse_faults

    return parse_faults(values)


sim_fault_option = click.option(
    "--sim-fault",
    "faults",
    multiple=True,
    callback=_faults,
    metavar="NAME[=VALUE]",
    help=(
        "With --simulate: rehearse a failure or a condition (crash-after=N, never-healthy, load-seconds=S, "
        "ttft-base-ms=MS, itl-ms=MS, control, kv-tokens=N, power-model=rtx4090 for `power tune --simulate`)."
    ),
)
