"""A toy third engine in one module, as a site would add one: nothing in deployctl/ names it.

ToyServe is an imagined OpenAI-compatible server whose launcher takes vLLM's flag spelling for the
flags they share, so it reuses the OpenAI dialect (and the simulator's personality that speaks it);
its memory rule, security profile, flags and environment are its own.
"""

from __future__ import annotations

from typing import Literal

from deployctl.engines import dialects
from deployctl.engines.base import EngineDefaults, EngineInputs, container
from deployctl.engines.memory import EngineStartup, KvBudget, MemoryRule, Releases, StartupInput
from deployctl.engines.security import ENGINE_PIDS, GIB, ceiling
from deployctl.gpus.gpu import Gpu
from deployctl.models import ModelFacts
from deployctl.models.quant import Quantization
from deployctl.plan import ContainerSecurity, EngineConfig, Scratch

DEFAULT_IMAGE = "registry.example/toyserve:1.4.2"
STARTUP_LINE = "toyserve: kv tokens "  # what it prints once its cache is allocated
MODEL_ROOT = "/models"
MiB = 1024**2
RUNTIME = 512 * MiB  # what a ToyServe process holds besides weights, activations and KV cache
BLOCK = 32  # tokens per KV block
SHARE = 0.85  # the share of the card ToyServe takes (its --memory-share)
FLAGS = ("--served-model-name", "--max-model-len", "--max-num-seqs", "--memory-share", "--quantization")


def startup_kv(inp: StartupInput) -> KvBudget:
    """Give the KV cache ToyServe allocates: its share of the card less weights, warm-up and runtime."""
    activations = inp.batch_tokens * inp.activation_bytes_per_token
    share = int(inp.memory_fraction * inp.total)
    block = BLOCK * inp.kv_bytes_per_token
    blocks = max(0, share - inp.weights - activations - RUNTIME) // block
    return KvBudget(
        kv_bytes=blocks * block,
        kv_tokens=blocks * BLOCK,
        runtime=RUNTIME,
        activations=activations,
        held_back=inp.total - share,
        knobs={"--memory-share": f"{inp.memory_fraction:.2f}"},
    )


def _batches(gpu: Gpu, max_input: int) -> list[int]:
    return [1024]


MEMORY_RULES = (
    MemoryRule(
        title="ToyServe 1.x",
        releases=Releases(first=(1, 0), before=(2, 0)),
        startup_kv=startup_kv,
        refusal=lambda asked, kv: None if 0 < asked.max_total_tokens <= kv.kv_tokens else "not enough KV tokens",
        scales_whole=lambda q: False,
        tied_copy=False,
        batch_name="max_batch_tokens",
        batch_candidates=_batches,
        fraction=lambda total, others, shards: SHARE,
        max_seqs=lambda gpu: 32,
        min_prefill=1024,
    ),
)


class Toy(EngineDefaults):
    name = "toy"
    title = "ToyServe"
    default_image = DEFAULT_IMAGE
    container_port = 8000
    health_path = "/health"
    dialect: dialects.Dialect = dialects.OPENAI
    api_key_env = "TOY_API_KEY"
    probe_tool: Literal["curl", "python3"] = "python3"
    flags: tuple[str, ...] = FLAGS
    memory_rules = MEMORY_RULES  # no KV-cache dtype flag: fp8 KV is not among its choices

    def model_id(self, served_name: str) -> str:
        return f"{MODEL_ROOT}/{served_name}"

    def quantization_flag(self, q: Quantization) -> str | None:
        return None if q.method == "none" else q.method

    def loads(self, model: ModelFacts) -> str | None:
        return "ToyServe loads no AWQ checkpoint" if model.quantization.method == "awq" else None

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        limits = inputs.limits
        args = [
            self.model_id(inputs.served_name),
            "--served-model-name",
            inputs.served_name,
            "--max-model-len",
            str(limits.max_total_tokens),
            "--max-num-seqs",
            str(limits.max_concurrent_requests),
            "--memory-share",
            inputs.knobs["--memory-share"],
        ]
        if (flag := self.quantization_flag(inputs.quantization)) is not None:
            args += ["--quantization", flag]
        return container(self, inputs, args=args, env={"TOY_OFFLINE": "1"}, shm_size=None)

    def start_budget_s(self, weight_bytes: int) -> int:
        return 60 + int(weight_bytes / 1e9 * 5)

    def container_security(self, weights: int, shards: int, shm: int) -> ContainerSecurity:
        scratch = [Scratch(path="/tmp", size_bytes=1 * GIB, why="ToyServe's compile cache")]
        return ContainerSecurity(
            user="2000:2000",
            user_reason="ToyServe runs as its own uid (2000).",
            scratch=scratch,
            pids_limit=ENGINE_PIDS,
            memory_bytes=ceiling(weights, shards, scratch, shm),
        )

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        said = [line for line in log.splitlines() if line.startswith(STARTUP_LINE)]
        if not said:
            return None
        tokens = int(said[-1].removeprefix(STARTUP_LINE))
        return EngineStartup(
            kv_tokens=tokens,
            concurrency=round(tokens / request_tokens, 2),
            request_tokens=request_tokens,
            line=said[-1],
        )


ENGINE = Toy()
