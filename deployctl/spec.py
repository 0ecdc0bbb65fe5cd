"""The deployment spec (`deployctl.yaml`): one validated model, loaded with errors that name key and line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployctl.errors import InputError

DEFAULT_SPEC_FILE = "deployctl.yaml"
DEFAULT_PRESET = "llama-3.1-8b-instruct-gptq"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    path: Path | None = Field(None, description="model directory on this host")
    preset: str | None = Field(None, description="a catalog model, for planning without weights")
    served_name: str | None = None
    quantize: Literal["gptq", "awq", "none"] = "gptq"
    revision: str | None = Field(None, description="a label recorded in the plan")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if self.path is not None and self.preset is not None:
            raise ValueError("give model.path or model.preset, not both")
        return self


class Limits(_Strict):
    max_input_tokens: int | None = Field(None, gt=0)
    max_total_tokens: int | None = Field(None, gt=1)
    max_batch_prefill_tokens: int | None = Field(None, gt=0)
    max_concurrent_requests: int | None = Field(None, gt=0, le=100_000)

    @model_validator(mode="after")
    def _input_below_total(self) -> Limits:
        if (
            self.max_input_tokens is not None
            and self.max_total_tokens is not None
            and self.max_input_tokens >= self.max_total_tokens
        ):
            raise ValueError("max_input_tokens must be smaller than max_total_tokens")
        return self


class Serve(_Strict):
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    api_key_file: Path | None = Field(None, description="file holding the key")
    api_key: Any = Field(None, exclude=True)
    allow_open: bool = Field(False, description="serve a non-loopback bind without an API key, on purpose")

    @field_validator("api_key")
    @classmethod
    def _never_inline(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "an API key is never written inline: use serve.api_key_env (a variable name) "
                "or serve.api_key_file (a path)"
            )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("bind")
    @classmethod
    def _address(cls, value: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
        return value


class Power(_Strict):
    limit_watts: int | None = Field(None, gt=0, le=1000)


class DeploymentSpec(_Strict):
    name: str = Field("deployctl", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    engine: Literal["tgi", "vllm"] = "tgi"
    image: str | None = Field(None, description="the engine image; default: the engine's pinned image")
    model: ModelSource = ModelSource(preset=DEFAULT_PRESET)
    gpus: int | list[int | str] = 1
    gpu_model: str | None = None
    limits: Limits = Limits()
    serve: Serve = Serve()
    power: Power = Power()
    stack_dir: Path = Path("deployctl-stack")

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: int | list[int | str]) -> int | list[int | str]:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("gpus must be at least 1")
            return value
        if not value:
            raise ValueError("gpus must name at least one GPU")
        for item in value:
            if isinstance(item, int) and item < 0:
                raise ValueError(f"GPU index {item} is negative")
            if isinstance(item, str) and not _UUID.match(item):
                raise ValueError(f"{item!r} is neither a GPU index nor a UUID (GPU-...)")
        if len(set(map(str, value))) != len(value):
            raise ValueError("gpus names a GPU twice")
        return value

    @model_validator(mode="after")
    def _default_model(self) -> DeploymentSpec:
        if self.model.path is None and self.model.preset is None:
            raise ValueError("model needs a path (a model directory) or a preset")
        return self

    @property
    def gpu_count(self) -> int:
        return self.gpus if isinstance(self.gpus, int) else len(self.gpus)

    def resolve_api_key(self) -> str | None:
        """Give the API key from the variable or file the spec names, or None when none is set."""
        if self.serve.api_key_env:
            key = os.environ.get(self.serve.api_key_env)
            if not key:
                raise InputError(
                    f"serve.api_key_env: environment variable {self.serve.api_key_env} is not set",
                    f"export {self.serve.api_key_env}=... before running deployctl",
                )
            return key.strip()
        if self.serve.api_key_file:
            try:
                key = self.serve.api_key_file.read_text().strip()
            except OSError as exc:
                raise InputError(f"serve.api_key_file: cannot read {self.serve.api_key_file}: {exc.strerror}") from None
            if not key:
                raise InputError(f"serve.api_key_file: {self.serve.api_key_file} is empty")
            return key
        return None


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML mapping to its (1-based) line."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = (*prefix, str(key.value))
                lines[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*prefix, str(i))] = item.start_mark.line + 1
                walk(item, (*prefix, str(i)))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _describe(error: dict[str, Any], where: str, lines: dict[tuple[str, ...], int]) -> str:
    loc = tuple(str(p) for p in error["loc"] if not str(p).startswith(("int", "list[", "function")))
    key = ".".join(loc) or "(top level)"
    line = None
    for n in range(len(loc), 0, -1):
        line = lines.get(loc[:n])
        if line:
            break
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    position = f"{where}:{line}" if line else where
    return f"{position}: {key}: {message}"


def parse(text: str, where: str = DEFAULT_SPEC_FILE, overrides: dict[str, Any] | None = None) -> DeploymentSpec:
    """Give the spec that YAML text describes, with CLI overrides applied on top."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
        lines = _line_index(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        # Where the broken construct began (an unclosed bracket) says more than where parsing gave up.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise InputError(f"{where}{line}: not valid YAML: {context + ', ' if context else ''}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: the spec must be a mapping of keys (name:, model:, ...), not {type(data).__name__}")
    for section in ("model", "limits", "serve", "power"):
        if section in data and data[section] is None:
            del data[section]  # a section whose keys are all commented out
    for dotted, value in (overrides or {}).items():
        _set(data, dotted.split("."), value)
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise InputError(_describe(dict(first), where, lines) + suffix) from None


def _set(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
    if keys == ["model", "path"]:
        node.pop("preset", None)
    if keys == ["model", "preset"]:
        node.pop("path", None)


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> DeploymentSpec:
    """Give the spec from `path` (or embedded defaults when there is no file), with overrides.

    Relative paths in the file are taken relative to the file's folder.
    """
    if path is None:
        candidate = Path(DEFAULT_SPEC_FILE)
        path = candidate if candidate.is_file() else None
    if path is None:
        return parse("", "(embedded defaults)", overrides)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such spec file", "run `deployctl init` to write one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    spec = parse(text, str(path), overrides)
    return _relative_to(spec, path.parent.absolute(), overrides or {})


def _relative_to(spec: DeploymentSpec, base: Path, overrides: dict[str, Any]) -> DeploymentSpec:
    changes: dict[str, Any] = {}
    if spec.model.path is not None and not spec.model.path.is_absolute() and "model.path" not in overrides:
        changes["model"] = spec.model.model_copy(update={"path": base / spec.model.path})
    if not spec.stack_dir.is_absolute() and "stack_dir" not in overrides:
        changes["stack_dir"] = base / spec.stack_dir
    if spec.serve.api_key_file is not None and not spec.serve.api_key_file.is_absolute():
        changes["serve"] = spec.serve.model_copy(update={"api_key_file": base / spec.serve.api_key_file})
    return spec.model_copy(update=changes) if changes else spec


STARTER = """\
# deployctl.yaml: one deployment. CLI flags override these values.
name: {name}                 # compose project name (lowercase, digits, - and _)
engine: tgi                    # tgi (Hugging Face text-generation-inference) or vllm (vLLM)
# image: ghcr.io/...           # default: the engine's pinned image (deployctl plan shows it)

model:
  path: ./models/my-model-gptq # a local directory with config.json and *.safetensors
  # preset: {preset}   # or plan from the built-in catalog, without weights
  quantize: gptq               # gptq | awq | none
  # served_name: my-model      # the name clients see (default: the directory name)
  # revision: 2025-01-rc1      # a label recorded in the plan

gpus: 1                        # a count, or a list of indices / UUIDs: [0, 1]
# gpu_model: rtx4090           # plan for another host's GPUs instead of this one's

limits:                        # leave out to let the planner choose what fits
  # max_input_tokens: 4096
  # max_total_tokens: 8192
  # max_batch_prefill_tokens: 4146
  # max_concurrent_requests: 128

serve:
  bind: 127.0.0.1              # 0.0.0.0 to serve the LAN
  port: 8080
  # api_key_env: DEPLOYCTL_API_KEY   # the key is read from this variable...
  # api_key_file: /etc/deployctl/api-key  # ...or this file; never written here

power:
  # limit_watts: 300           # applied by `deployctl up` (needs root)

stack_dir: ./deployctl-stack   # where compose.yaml, .env and plan.json are written
"""


def starter(name: str = "my-llm") -> str:
    """Give the commented starter spec that `deployctl init` writes."""
    return STARTER.format(name=name, preset=DEFAULT_PRESET)
