"""What an engine's start-up memory rule takes and gives, as plain numbers, and how a rule is kept per release.

These live with the engines, not the planner, so that a rule imports nothing of the planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from deployctl.errors import InputError
from deployctl.gpus.gpu import Gpu

if TYPE_CHECKING:
    from deployctl.models.quant import Quantization


@dataclass(frozen=True)
class StartupInput:
    """What an engine's start-up memory rule needs for one GPU, in bytes (plain numbers, no I/O)."""

    total: int  # the GPU's memory as CUDA reports it (torch.cuda.mem_get_info's total)
    used_by_others: int  # memory other processes hold on it
    weights: int  # the weight bytes this GPU loads
    shards: int
    batch_tokens: int  # TGI: max_batch_prefill_tokens; vLLM: max_num_batched_tokens
    max_seqs: int  # vLLM: max_num_seqs (its sampler warm-up); TGI: unused
    activation_bytes_per_token: int  # this GPU's activation peak per prefill token
    logits_bytes_per_seq: int  # one sequence's logits row as the sampler holds it
    kv_bytes_per_token: int  # this GPU's KV bytes per token at the chosen KV dtype
    memory_fraction: float  # TGI --cuda-memory-fraction / vLLM --gpu-memory-utilization
    head_dim: int = 128  # the attention head size (TGI's attention backend, and so its block size, follow it)


@dataclass(frozen=True)
class KvBudget:
    """What an engine's start-up rule gives the KV cache on one GPU, and how it got there."""

    kv_bytes: int
    kv_tokens: int
    runtime: int  # CUDA context, kernels and NCCL buffers
    activations: int  # the warm-up / profiling peak the rule subtracts
    held_back: int  # what the rule keeps free (TGI: wiggle room; vLLM: 1 - utilization)
    knobs: dict[str, str] = field(default_factory=dict)  # flags / env the rule's numbers assume
    block_size: int = 1  # tokens per KV block
    block_bytes: int = 0  # bytes of one KV block on this GPU
    warmup_room: int = 0  # TGI: bytes the warm-up batch's own KV blocks may take (free before the warm-up prefill)


@dataclass(frozen=True)
class Asked:
    """The limits a plan asks the engine to start with."""

    max_input_tokens: int
    max_total_tokens: int
    prefill_tokens: int  # TGI max_batch_prefill_tokens / vLLM max_num_batched_tokens


# An image tag deployctl reads a release from: "3.3.7", "v0.30.0", and "3.3.7-slim" (what `deployctl image
# slim` makes of a release keeps its code). Anything else (latest, a digest, 3.3.7-rocm, a locally built
# tag) names no release whose source was read.
_RELEASE_TAG = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-slim)?")


def version_of(image: str) -> tuple[int, ...] | None:
    """Give the release an image's tag names (`vllm/vllm-openai:v0.30.0` -> (0, 30, 0)), or None.

    None for a tag that names no release (`latest`, a site's own tag, another build such as `3.3.7-rocm`)
    and for an image pinned by digest only.
    """
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _RELEASE_TAG.fullmatch(last.rpartition(":")[2])
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Releases:
    """The engine releases a memory rule was read from: `first` up to, not including, `before`; where `read`
    lists them, only those (a patch release inside the range whose source was not read is not covered)."""

    first: tuple[int, ...]
    before: tuple[int, ...]
    read: tuple[str, ...] = ()

    def covers(self, version: tuple[int, ...]) -> bool:
        """Whether `version` is one of these releases."""
        return self.first <= version < self.before and (not self.read or _dotted(version) in self.read)

    def __str__(self) -> str:
        return ", ".join(self.read) if self.read else f"{_dotted(self.first)} up to {_dotted(self.before)}"


@dataclass(frozen=True)
class MemoryRule:
    """One engine's start-up memory rule for a range of its releases, and the choices that go with it (pure)."""

    title: str  # the engine and the release range, as an operator reads it: "TGI 3.3.4-3.3.7"
    releases: Releases  # the releases whose source the rule was read from
    startup_kv: Callable[[StartupInput], KvBudget]
    # Why the engine would refuse to start with these limits and this KV budget (the GPU with the fewest
    # KV tokens), in the engine's words; None when it starts.
    refusal: Callable[[Asked, KvBudget], str | None]
    scales_whole: Callable[[Quantization], bool]  # row-parallel scales/zeros whole on every GPU
    tied_copy: bool  # loads a tied lm_head as a second copy of the embedding
    batch_name: str  # the flag that sets the prefill budget
    batch_candidates: Callable[[Gpu, int], list[int]]  # (GPU, max_input_tokens) -> budgets, largest first
    fraction: Callable[[int, int, int], float]  # (GPU total, used by others, GPUs) -> memory fraction knob
    max_seqs: Callable[[Gpu], int]  # the concurrency it plans for when the spec names none
    min_prefill: int  # the smallest prefill budget deployctl offers under this rule
    # Settings the rule's numbers take at their defaults: shown beside the plan's knobs, never set.
    assumed: Mapping[str, str] = field(default_factory=dict)
    # Set when the image's release has no rule and the operator asked for a plan anyway
    # (`--unverified-engine`): what to say on every line of the plan.
    guess: str | None = None

    def accepts(self, asked: Asked, kv: KvBudget) -> bool:
        """Whether the engine starts with these limits on this KV budget."""
        return self.refusal(asked, kv) is None


def rule_for(rules: Sequence[MemoryRule], image: str, *, unverified: bool = False) -> MemoryRule:
    """Give the rule of the release `image` runs; InputError naming the supported releases when none was read.

    With `unverified` the newest rule stands in, marked as a guess.
    """
    version = version_of(image)
    for rule in rules:
        if version is not None and rule.releases.covers(version):
            return rule
    newest = rules[-1]
    engine = newest.title.split()[0]
    what = f"{engine} {_dotted(version)}" if version else f"no {engine} release deployctl can read from its tag"
    if not unverified:
        supported = ", ".join(str(r.releases) for r in rules)
        raise InputError(
            f"image {image}: {what}; deployctl's memory rule is read from each release's own source",
            f"supported: {supported}; or pass --unverified-engine (unverified_engine: true) to plan it with the"
            f" {newest.title} rule as a guess",
        )
    return replace(
        newest,
        guess=f"GUESS: {image} is {what}, whose source deployctl has not read; this plan uses the {newest.title}"
        " rule and may not start",
    )


@dataclass(frozen=True)
class EngineStartup:
    """What an engine says it allocated at start-up (its own log line), in its own numbers."""

    kv_tokens: int  # tokens the KV cache holds (per replica: a tensor-parallel shard holds its heads of each)
    concurrency: float | None  # how many requests of `request_tokens` fit at once, as the engine says
    request_tokens: int | None  # the request length that concurrency is for (vLLM: max_model_len)
    line: str  # the log line(s) it was read from, as printed


def line_at(text: str, pos: int) -> str:
    """Give the whole line of `text` that holds position `pos`, stripped and cut to 300 characters."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1 : end if end >= 0 else len(text)].strip()[:300]
