"""What an engine's start-up memory rule takes and gives (in engines/<name>.py), as plain numbers, and
which release's rule an image gets.

These live with the engines, not the planner, so that a rule imports nothing of the planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from deployctl.errors import InputError

if TYPE_CHECKING:
    from deployctl.gpus.gpu import Gpu
    from deployctl.models import ModelFacts
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


@dataclass(frozen=True)
class EngineRules:
    """One engine release range's start-up memory rule, what it loads, and the choices that go with it."""

    name: str
    title: str  # the name operators know the engine by, with the release range: "TGI 3.3.4-3.3.7"
    versions: tuple[str, ...]  # the releases whose source this rule was read from (image tags, without a "v")
    startup_kv: Callable[[StartupInput], KvBudget]
    # Why the engine would refuse to start with these limits and this KV budget (the GPU with the fewest
    # KV tokens), in the engine's words; None when it starts.
    refusal: Callable[[Asked, KvBudget], str | None]
    # Why this release does not load the checkpoint (its quantization or architecture), or None.
    loads: Callable[[ModelFacts], str | None]
    scales_whole: Callable[[Quantization], bool]  # row-parallel scales/zeros whole on every GPU
    tied_copy: bool  # loads a tied lm_head as a second copy of the embedding
    batch_name: str  # the flag that sets the prefill budget
    batch_candidates: Callable[[Gpu, int], list[int]]  # (GPU, max_input_tokens) -> budgets, largest first
    fraction: Callable[[int, int, int], float]  # (GPU total, used by others, GPUs) -> memory fraction knob
    max_seqs: Callable[[Gpu], int]
    # Set when the image's release has no rule and the operator asked for a plan anyway
    # (`--unverified-engine`): what to say on every line of the plan.
    guess: str | None = None

    def accepts(self, asked: Asked, kv: KvBudget) -> bool:
        """Whether the engine starts with these limits on this KV budget."""
        return self.refusal(asked, kv) is None


# An image tag deployctl reads a release from: "3.3.7", "v0.30.0", and "3.3.7-slim" (what `deployctl image
# slim` makes of a release keeps its code). Anything else (latest, a digest, 3.3.7-rocm, a locally built
# tag) names no release whose source was read.
_RELEASE_TAG = re.compile(r"v?(\d+\.\d+\.\d+)(?:-slim)?")


def image_release(image: str) -> str | None:
    """Give the release an image's tag names (`...:3.3.7` -> 3.3.7, `...:v0.30.0` -> 0.30.0), or None."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    match = _RELEASE_TAG.fullmatch(tag)
    return match.group(1) if match else None


def rule_for_image(rules: tuple[EngineRules, ...], image: str, *, unverified: bool = False) -> EngineRules:
    """Give the rule of the release `image` runs; InputError naming the supported releases when none was read.

    With `unverified` the newest rule stands in, marked as a guess.
    """
    release = image_release(image)
    for rule in rules:
        if release in rule.versions:
            return rule
    newest = rules[-1]
    engine = newest.title.split()[0]
    what = f"{engine} {release}" if release else f"no {engine} release deployctl can read from its tag"
    if not unverified:
        supported = ", ".join(v for r in rules for v in r.versions)
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
