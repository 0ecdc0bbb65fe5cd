"""What an engine's start-up memory rule takes and gives, as plain numbers, and how a rule is kept per release.

These live with the engines, not the planner, so that a rule imports nothing of the planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from deployctl.gpus.gpu import Gpu


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


@dataclass(frozen=True)
class KvBudget:
    """What an engine's start-up rule gives the KV cache on one GPU, and how it got there."""

    kv_bytes: int
    kv_tokens: int
    runtime: int  # CUDA context, kernels and NCCL buffers
    activations: int  # the warm-up / profiling peak the rule subtracts
    held_back: int  # what the rule keeps free (TGI: wiggle room; vLLM: 1 - utilization)
    knobs: dict[str, str] = field(default_factory=dict)  # flags / env the rule's numbers assume


def version_of(image: str) -> tuple[int, ...] | None:
    """Give the release an image's tag names (`vllm/vllm-openai:v0.30.0` -> (0, 30, 0)), or None.

    None for a tag that names no release (`latest`, a site's own tag) and for an image pinned by digest only.
    """
    name = image.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", last.rpartition(":")[2])
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


@dataclass(frozen=True)
class Releases:
    """The engine releases a memory rule was read from: `first` up to, not including, `before`."""

    first: tuple[int, ...]
    before: tuple[int, ...]

    def covers(self, version: tuple[int, ...]) -> bool:
        """Whether `version` is one of these releases."""
        return self.first <= version < self.before

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.first))} up to {'.'.join(map(str, self.before))}"


@dataclass(frozen=True)
class MemoryRule:
    """One engine's start-up memory rule for a range of its releases, and the choices that go with it (pure)."""

    releases: Releases  # the releases whose source the rule was read from
    startup_kv: Callable[[StartupInput], KvBudget]
    accepts: Callable[[int, int], bool]  # (max total tokens, KV tokens) -> whether the engine starts
    tied_copy: bool  # loads a tied lm_head as a second copy of the embedding
    batch_name: str  # the flag that sets the prefill budget
    batch_candidates: Callable[[Gpu, int], list[int]]  # (GPU, max_input_tokens) -> budgets, largest first
    fraction: Callable[[int, int], float]  # (GPU total, used by others) -> memory fraction knob
    max_seqs: Callable[[Gpu], int]  # the concurrency it plans for when the spec names none
    min_prefill: int  # the smallest prefill budget deployctl offers under this rule
    # Settings the rule's numbers take at their defaults: shown beside the plan's knobs, never set.
    assumed: Mapping[str, str] = field(default_factory=dict)


def rule_for(rules: Sequence[MemoryRule], image: str, pinned: str) -> MemoryRule:
    """Give the rule of the release `image` runs; the pinned image's rule for a tag that names none.

    A tag naming a release outside every range gets the pinned release's rule too (as before rules
    were kept per release); refusing it is for when more than one range is known.
    """
    for version in (version_of(image), version_of(pinned)):
        for rule in rules:
            if version is not None and rule.releases.covers(version):
                return rule
    return rules[0]


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
