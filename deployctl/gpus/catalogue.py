"""GPU profiles: plan for a host whose GPUs are not in this machine (`--gpu-model rtx4090`, `--compare`).

Each figure says where it comes from. `cuda_total` is the memory CUDA (torch) reports as the
device's total, which is what the engines size their caches from; it is below the board's
marketing size (the driver keeps some for itself). On a real GPU NVML's numbers replace these.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployctl.errors import InputError
from deployctl.gpus.gpu import GiB, Gpu, Host, PowerState


@dataclass(frozen=True)
class GpuProfile:
    name: str
    marketing_name: str
    memory_bytes: int  # on the box (what NVML calls total)
    cuda_total: int  # what torch.cuda.mem_get_info() reports as total
    bandwidth_gbs: float  # memory bandwidth, GB/s (datasheet)
    fp16_tflops: float  # dense FP16 tensor-core TFLOP/s with FP32 accumulate (datasheet, no sparsity)
    compute_capability: str
    p2p: bool  # peer-to-peer between two cards of this kind (NVLink or PCIe P2P)
    interconnect: str
    max_gpus: int  # the largest host of this kind deployctl plans for
    power: PowerState
    source: str


def _gib(x: float) -> int:
    return int(x * GiB)


PROFILES: dict[str, GpuProfile] = {
    "rtx3090": GpuProfile(
        name="rtx3090",
        marketing_name="NVIDIA GeForce RTX 3090",
        memory_bytes=24 * GiB,
        cuda_total=_gib(23.69),  # PyTorch OOM messages on RTX 3090 ("23.69 GiB total capacity"); not measured here
        bandwidth_gbs=936.0,
        fp16_tflops=71.0,
        compute_capability="8.6",
        p2p=True,
        interconnect="NVLink bridge (112.5 GB/s) where fitted, else PCIe 4.0 x16",
        max_gpus=2,
        power=PowerState(limit_w=350, default_limit_w=350, enforced_limit_w=350, min_limit_w=100, max_limit_w=400),
        source="NVIDIA Ampere GA102 whitepaper, appendix A (RTX 3090: 936 GB/s, 71 dense FP16 tensor TFLOPS at FP32 accumulate, 350 W)",
    ),
    "rtx4090": GpuProfile(
        name="rtx4090",
        marketing_name="NVIDIA GeForce RTX 4090",
        memory_bytes=24 * GiB,
        # "GPU 0 has a total capacity of 23.64 GiB" (PyTorch OOM on an RTX 4090, ali-vilab/VGen#104); design.md
        cuda_total=_gib(23.64),
        bandwidth_gbs=1008.0,
        fp16_tflops=165.2,
        compute_capability="8.9",
        p2p=False,  # no NVLink; P2P over PCIe is off on most drivers
        interconnect="PCIe 4.0 x16, no P2P (NCCL through host memory)",
        max_gpus=2,
        power=PowerState(limit_w=450, default_limit_w=450, enforced_limit_w=450, min_limit_w=150, max_limit_w=600),
        source="NVIDIA Ada Lovelace architecture whitepaper, appendix A (RTX 4090: 1008 GB/s, 165.2 dense FP16 tensor TFLOPS at FP32 accumulate, 450 W)",
    ),
    "rtx5090": GpuProfile(
        name="rtx5090",
        marketing_name="NVIDIA GeForce RTX 5090",
        memory_bytes=32 * GiB,
        cuda_total=_gib(31.36),  # "total capacity of 31.36 GiB" (PyTorch OOM on an RTX 5090, TrajectoryCrafter#20)
        bandwidth_gbs=1792.0,
        fp16_tflops=209.5,
        compute_capability="12.0",
        p2p=False,
        interconnect="PCIe 5.0 x16, no NVLink",
        max_gpus=2,
        power=PowerState(limit_w=575, default_limit_w=575, enforced_limit_w=575, min_limit_w=400, max_limit_w=600),
        source="NVIDIA RTX Blackwell GPU architecture whitepaper (RTX 5090: 1792 GB/s, 209.5 dense FP16 tensor TFLOPS at FP32 accumulate, 575 W)",
    ),
    "l40s": GpuProfile(
        name="l40s",
        marketing_name="NVIDIA L40S",
        # "48 GB" is 46068 MiB as NVML reports it on an L40, the same board memory (InternLM/lmdeploy#1459)
        memory_bytes=46068 * 1024**2,
        cuda_total=_gib(
            44.40
        ),  # "total capacity of 44.40 GiB" (PyTorch OOM on an L40, same 48 GB board; QwenLM/Qwen3-VL#2097)
        bandwidth_gbs=864.0,
        fp16_tflops=362.05,
        compute_capability="8.9",
        p2p=True,
        interconnect="PCIe 4.0 x16 with P2P, no NVLink",
        max_gpus=8,
        power=PowerState(limit_w=350, default_limit_w=350, enforced_limit_w=350, min_limit_w=100, max_limit_w=350),
        source="NVIDIA L40S datasheet (864 GB/s, FP16 tensor 362.05 TFLOPS dense, 350 W)",
    ),
    "a100-40gb": GpuProfile(
        name="a100-40gb",
        marketing_name="NVIDIA A100-SXM4-40GB",
        memory_bytes=40 * GiB,
        cuda_total=_gib(
            39.39
        ),  # PyTorch OOM messages on A100-SXM4-40GB ("39.39 GiB total capacity"); not measured here
        bandwidth_gbs=1555.0,
        fp16_tflops=312.0,
        compute_capability="8.0",
        p2p=True,
        interconnect="NVLink 3 (600 GB/s)",
        max_gpus=8,
        power=PowerState(limit_w=400, default_limit_w=400, enforced_limit_w=400, min_limit_w=100, max_limit_w=400),
        source="NVIDIA A100 Tensor Core GPU datasheet (SXM4 40GB: 1555 GB/s, FP16 tensor 312 TFLOPS dense, 400 W)",
    ),
    "a100-80gb": GpuProfile(
        name="a100-80gb",
        marketing_name="NVIDIA A100-SXM4-80GB",
        memory_bytes=80 * GiB,
        cuda_total=_gib(79.25),  # "79.25 GiB total capacity" (PyTorch OOM on an A100 80GB, levihsu/OOTDiffusion#235)
        bandwidth_gbs=2039.0,
        fp16_tflops=312.0,
        compute_capability="8.0",
        p2p=True,
        interconnect="NVLink 3 (600 GB/s)",
        max_gpus=8,
        power=PowerState(limit_w=400, default_limit_w=400, enforced_limit_w=400, min_limit_w=100, max_limit_w=400),
        source="NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB: 2039 GB/s, FP16 tensor 312 TFLOPS dense, 400 W)",
    ),
    "h100-80gb": GpuProfile(
        name="h100-80gb",
        marketing_name="NVIDIA H100 80GB HBM3",
        memory_bytes=85520809984,  # NVML on a real H100 SXM (docs/h100-gpus.json)
        cuda_total=_gib(79.11),  # "total capacity of 79.11 GiB" (PyTorch OOM on an H100, vllm-project/vllm#27508)
        bandwidth_gbs=3350.0,
        fp16_tflops=989.0,
        compute_capability="9.0",
        p2p=True,
        interconnect="NVLink 4 (900 GB/s)",
        max_gpus=8,
        # min 200 W / max 700 W read from NVML on a real H100 (docs/h100-gpus.json)
        power=PowerState(limit_w=700, default_limit_w=700, enforced_limit_w=700, min_limit_w=200, max_limit_w=700),
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM: 3.35 TB/s, FP16 tensor 989 TFLOPS dense, 700 W)",
    ),
}
_ALIASES = {
    "a10040gb": "a100-40gb",
    "a100": "a100-80gb",
    "a10080gb": "a100-80gb",
    "h100": "h100-80gb",
    "h10080gb": "h100-80gb",
}


def _key(name: str) -> str:
    key = name.lower().replace(" ", "").replace("geforce", "").replace("nvidia", "")
    if key in PROFILES:
        return key
    return _ALIASES.get(key.replace("-", "").replace("_", ""), key.replace("-", ""))


def profile(name: str) -> GpuProfile:
    """Give the named profile, or an InputError listing the known ones."""
    key = _key(name)
    if key not in PROFILES:
        raise InputError(f"gpu_model {name[:40]!r} is unknown", f"known: {', '.join(PROFILES)}")
    return PROFILES[key]


def for_name(gpu_name: str) -> GpuProfile | None:
    """Give the profile whose marketing name matches an NVML device name, if any."""
    lowered = gpu_name.lower()
    return next((p for p in PROFILES.values() if p.marketing_name.lower() in lowered), None)


def host(name: str, count: int) -> Host:
    """Give a host of `count` GPUs of the named profile (their memory as CUDA reports it)."""
    p = profile(name)
    gpus = [
        Gpu(
            index=i,
            uuid=f"profile-{p.name}-{i}",
            name=p.marketing_name,
            memory_total=p.cuda_total,
            compute_capability=p.compute_capability,
            power=p.power,
            source="profile",
        )
        for i in range(max(count, 1))
    ]
    return Host(gpus=gpus, p2p=p.p2p, profile=p.name, max_gpus=p.max_gpus)
