"""The deployment spec (`deployctl.yaml`): one validated model, loaded with errors that name key and line."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from deployctl import safepath
from deployctl.boundedparse import SPEC_MAX_BYTES, read_text, yaml_document
from deployctl.errors import InputError
from deployctl.terminal import shown

DEFAULT_SPEC_FILE = "deployctl.yaml"
DEFAULT_PRESET = "llama-3.1-8b-instruct-gptq"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]{1,64}$")
# A Docker image reference, after the grammar of distribution/reference (regexp.go): an optional
# registry host[:port], lowercase path components, an optional :tag and an optional @digest.
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# distribution/reference: NameTotalLengthMax 255, a tag at most 128, a sha512 digest 135: 520 in all.
IMAGE_MAX = 520
# Linux: PATH_MAX 4096 for a whole path, NAME_MAX 255 bytes for one component (limits.h).
PATH_MAX = 4096
COMPONENT_MAX = 255
# Contexts beyond 2^24 tokens exist in no model deployctl plans for (the largest catalog entry has 128k).
TOKENS_MAX = 1 << 24
# Engine names, as the registry keeps them (deployctl/engines/__init__.py): a lowercase word.
_ENGINE = re.compile(r"^[a-z][a-z0-9_-]*$")
ENGINE_MAX = 32
# Compose project names: lowercase letters, digits, '-' and '_' (compose-spec, "name" top-level element).
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PROJECT_MAX = 63


def _safe_name(what: str) -> Any:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return safepath.check_name(value, what)
        except InputError as exc:
            raise ValueError(exc.message.removeprefix(f"{what}: ")) from None

    return AfterValidator(check)


def _local_path(value: Path | None) -> Path | None:
    if value is None:
        return None
    text = str(value)
    if "\x00" in text:
        raise ValueError("a path cannot hold a NUL byte")
    if len(text.encode()) > PATH_MAX:
        raise ValueError(f"the path is longer than {PATH_MAX} bytes")
    for part in value.parts:
        if len(part.encode()) > COMPONENT_MAX:
            raise ValueError(f"{shown(part)!r} is longer than {COMPONENT_MAX} bytes, too long for one folder name")
    return value


LocalPath = Annotated[Path, AfterValidator(_local_path)]
Tokens = Annotated[StrictInt, Field(gt=0, le=TOKENS_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    path: LocalPath | None = Field(None, description="model directory on this host")
    preset: Annotated[str | None, _safe_name("model.preset")] = Field(
        None, description="a catalog model, for planning without weights"
    )
    served_name: Annotated[str | None, _safe_name("model.served_name")] = None
    quantize: Literal["gptq", "awq", "none"] = "gptq"
    revision: Annotated[str | None, _safe_name("model.revision")] = Field(
        None, description="a label recorded in the plan"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if self.path is not None and self.preset is not None:
            raise ValueError("give model.path or model.preset, not both")
        return self


class Limits(_Strict):
    max_input_tokens: Tokens | None = None
    max_total_tokens: Annotated[StrictInt, Field(gt=1, le=TOKENS_MAX)] | None = None
    max_batch_prefill_tokens: Tokens | None = None
    max_concurrent_requests: Annotated[StrictInt, Field(gt=0, le=100_000)] | None = None

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
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 8080
    api_key_env: str | None = Field(
        None, max_length=128, description="name of the environment variable holding the key"
    )
    api_key_file: LocalPath | None = Field(None, description="file holding the key")
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
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{shown(value)!r} is not an environment variable name")
        return value

    @field_validator("bind")
    @classmethod
    def _address(cls, value: str) -> str:
        import ipaddress

        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{shown(value)!r} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
        return value


def _engine_name(value: str) -> str:
    if len(value) > ENGINE_MAX or not _ENGINE.fullmatch(value):
        raise ValueError(f"{shown(value)!r} is not an engine's name (e.g. tgi or vllm)")
    return value


class Power(_Strict):
    limit_watts: Annotated[StrictInt, Field(gt=0, le=1000)] | None = None


class Monitoring(_Strict):
    """The Compose monitoring profile and the SLOs its alerts watch (docs/monitoring.md)."""

    enabled: bool = Field(
        False, description="render Prometheus, Grafana and the GPU exporter as the stack's `monitoring` profile"
    )
    slo_ttft_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    slo_itl_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    slo_percentile: Literal["p50", "p90", "p95", "p99", "p999"] = "p99"
    bind: str = Field("127.0.0.1", description="where Prometheus and Grafana listen on the host")
    prometheus_port: Annotated[StrictInt, Field(ge=1, le=65535)] = 9090
    grafana_port: Annotated[StrictInt, Field(ge=1, le=65535)] = 3000
    gpu_exporter: bool = Field(True, description="run `deployctl exporter` as a service (not with --simulate)")

    _address = field_validator("bind")(Serve._address.__func__)  # type: ignore[attr-defined]


class DeploymentSpec(_Strict):
    name: str = "deployctl"
    # A registered engine's name (deployctl/engines/): the registry says which exist, when the plan asks it.
    engine: Annotated[str, AfterValidator(_engine_name)] = "tgi"
    image: str | None = Field(None, description="the engine image; default: the engine's pinned image")
    unverified_engine: bool = Field(
        False, description="plan an image whose release has no memory rule with the newest rule, as a guess"
    )
    model: ModelSource = ModelSource(preset=DEFAULT_PRESET)
    gpus: int | list[int | str] = 1
    gpu_model: Annotated[str | None, _safe_name("gpu_model")] = None
    limits: Limits = Limits()
    serve: Serve = Serve()
    power: Power = Power()
    stack_dir: LocalPath = Path("deployctl-stack")
    monitoring: Monitoring = Monitoring()
    # Which values a command-line flag gave (dotted key -> flag): `plan` says where a value came from.
    _flags: dict[str, str] = PrivateAttr(default_factory=dict)

    def source_of(self, key: str) -> str:
        """Give where the value of `key` (dotted) came from: "from --flag" or "from the spec"."""
        flag = self._flags.get(key)
        return f"from {flag}" if flag else "from the spec"

    @field_validator("name")
    @classmethod
    def _project(cls, value: str) -> str:
        try:
            safepath.check_name(value, "name")
        except InputError as exc:
            raise ValueError(exc.message.removeprefix("name: ")) from None
        if len(value) > PROJECT_MAX or not _PROJECT.fullmatch(value):
            raise ValueError(
                f"{shown(value)!r} is not a Compose project name "
                f"(lowercase letters, digits, '-' and '_', at most {PROJECT_MAX} characters)"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is None:
            return None  # the engine's pinned image
        if not value:
            raise ValueError("the image cannot be empty (leave it out for the engine's pinned image)")
        if len(value) > IMAGE_MAX or not _IMAGE.fullmatch(value):
            raise ValueError(f"{shown(value)!r} is not a Docker image reference (registry/name:tag)")
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        # One check for the whole union, so a bad value gives one message and not one per branch.
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 64:
                raise ValueError(f"gpus must be at least 1 and at most 64, not {value}")
            return value
        if not isinstance(value, list):
            raise ValueError(f"expected a count (2) or a list of GPU indices or UUIDs ([0, 1]), got {_kind(value)}")
        if not value:
            raise ValueError("gpus must name at least one GPU")
        if len(value) > 64:
            raise ValueError("gpus names more than 64 GPUs")
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                if not 0 <= item <= 1023:
                    raise ValueError(f"GPU index {item} is out of range (0-1023)")
            elif not isinstance(item, str) or not _UUID.fullmatch(item):
                raise ValueError(f"{_kind(item)} is neither a GPU index nor a UUID (GPU-...)")
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
                key = read_text(self.serve.api_key_file, max_bytes=4096, what="API key").strip()
            except FileNotFoundError:
                raise InputError(f"serve.api_key_file: {self.serve.api_key_file} does not exist") from None
            except InputError as exc:
                raise InputError(f"serve.api_key_file: {exc.message}") from None
            if not key:
                raise InputError(f"serve.api_key_file: {self.serve.api_key_file} is empty")
            return key
        return None


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    """Give the pydantic model that holds the keys at `loc` (None below a leaf)."""
    model: type[BaseModel] = DeploymentSpec
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _kind(value: Any) -> str:
    """Give how a YAML value reads to its author: true, 'text', a list, a mapping."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return shown(value)
    if isinstance(value, str):
        return repr(shown(value))
    return {"list": "a list", "dict": "a mapping"}.get(type(value).__name__, type(value).__name__)


def _describe(
    error: Mapping[str, Any],
    where: str,
    lines: dict[tuple[str, ...], int],
    flags: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> tuple[int, str]:
    loc = tuple(str(p) for p in error["loc"] if not str(p).startswith(("int", "list[", "function", "constrained-int")))
    key = ".".join(loc) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if str(error["type"]).endswith(("_type", "_parsing")) and "input" in error:
        message += f", got {_kind(error['input'])}"
    if error["type"] == "extra_forbidden":
        message = "unknown key"
        holder = _model_at(loc[:-1])
        if holder is not None:
            close = difflib.get_close_matches(loc[-1], list(holder.model_fields), n=1, cutoff=0.6)
            message += (
                f" (did you mean {'.'.join((*loc[:-1], close[0]))}?)"
                if close
                else (f" (known: {', '.join(k for k in holder.model_fields if k != 'api_key')})")
            )
    for dotted, flag in flags.items():
        if key == dotted or key.startswith(dotted + "."):
            return 0, f"{flag} {shown(overrides.get(dotted))}: {message}"
    line = None
    for n in range(len(loc), 0, -1):
        line = lines.get(loc[:n])
        if line:
            break
    position = f"{where}:{line}" if line else where
    also = [f"{flag} {shown(overrides.get(d))}" for d, flag in flags.items() if d.startswith(key + ".")]
    suffix = f" (with {', '.join(also)})" if also and loc else ""
    return line or 0, f"{position}: {shown(key)}: {message}{suffix}"


def parse(
    text: str,
    where: str = DEFAULT_SPEC_FILE,
    overrides: dict[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> DeploymentSpec:
    """Give the spec that YAML text describes, with CLI overrides applied on top.

    Every problem is reported at once, in one InputError: each names its key and line, or the
    flag (from `flags`, dotted key -> flag) that set the value.
    """
    overrides = overrides or {}
    flags = {k: v for k, v in (flags or {}).items() if k in overrides}
    doc = yaml_document(text, where) if text.strip() else None
    data = doc.data if doc else None
    lines = doc.lines if doc else {}
    problems = [(line, f"{where}:{line}: {text}") for line, text in doc.problems] if doc else []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: the spec must be a mapping of keys (name:, model:, ...), not {type(data).__name__}")
    for section in ("model", "limits", "serve", "power"):
        if section in data and data[section] is None:
            del data[section]  # a section whose keys are all commented out
    for dotted, value in overrides.items():
        _set(data, dotted.split("."), value)
    _preset_engine(data)
    spec = None
    try:
        spec = DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(e, where, lines, flags, overrides) for e in exc.errors()]
    if problems or spec is None:
        raise InputError(_summary(problems))
    spec._flags = {key: flags[key] for key in overrides if key in flags}
    return spec


def _preset_engine(data: dict[str, Any]) -> None:
    """Give a spec that names no engine the engine its preset's checkpoint loads in (the catalog's `engine`)."""
    model = data.get("model")
    preset = model.get("preset") if isinstance(model, dict) else None
    if "engine" in data or not isinstance(preset, str) or (isinstance(model, dict) and model.get("path")):
        return
    from deployctl.models import catalog

    engine = catalog().get(preset, {}).get("engine")
    if isinstance(engine, str):
        data["engine"] = engine


def _summary(problems: list[tuple[int, str]]) -> str:
    """Give every problem on one line, flags first, then in the order of the file."""
    texts = list(dict.fromkeys(text for _, text in sorted(problems, key=lambda p: p[0])))
    if len(texts) == 1:
        return texts[0]
    return f"{len(texts)} problems: " + "; ".join(texts)


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


def load(
    path: Path | None,
    overrides: dict[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> DeploymentSpec:
    """Give the spec from `path` (or embedded defaults when there is no file), with overrides.

    `flags` maps an override's dotted key to the flag that gave it (serve.port -> --port), so an
    error in that value names the flag. Relative paths in the file are taken relative to the
    file's folder.
    """
    if path is None:
        candidate = Path(DEFAULT_SPEC_FILE)
        path = candidate if candidate.is_file() else None
    if path is None:
        return parse("", "(embedded defaults)", overrides, flags)
    try:
        text = read_text(path, max_bytes=SPEC_MAX_BYTES, what="spec")
    except FileNotFoundError:
        raise InputError(f"{path}: no such spec file", "run `deployctl init` to write one") from None
    spec = parse(text, str(path), overrides, flags)
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
# image: ghcr.io/...           # default: the engine's pinned image (deployctl plan shows it); its tag must
                               # name a release deployctl has a memory rule for (plan lists them), or set
# unverified_engine: true      # to plan it with the newest rule anyway, marked as a guess

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
