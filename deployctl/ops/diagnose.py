"""Read an engine's log tail and say what went wrong, in an operator's words. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    hint: str


_RULES: list[tuple[re.Pattern[str], Diagnosis]] = [
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|not enough memory", re.I),
        Diagnosis(
            "the GPU ran out of memory",
            "lower limits.max_total_tokens or max_batch_prefill_tokens, use more GPUs (--gpus 2), or free the GPU (nvidia-smi)",
        ),
    ),
    (
        re.compile(r"NCCL (error|WARN)|ncclSystemError|ncclUnhandledCudaError|ncclInternalError", re.I),
        Diagnosis(
            "NCCL failed between the GPUs",
            "keep NCCL_P2P_DISABLE=1 (rendered for GPUs without P2P), check shm_size, and `deployctl doctor` for P2P status",
        ),
    ),
    (
        re.compile(
            r"(No such file or directory|FileNotFoundError|does not appear to have a file|is not a valid model|not a local folder).*(config\.json|safetensors|model|/data)",
            re.I,
        ),
        Diagnosis(
            "the model files are missing or incomplete inside the container",
            "check model.path holds config.json and *.safetensors; re-install the bundle",
        ),
    ),
    (
        re.compile(r"address already in use|port is already allocated|bind: address", re.I),
        Diagnosis(
            "the serving port is taken by another program",
            "choose another with --port or serve.port, or stop the other program (ss -ltnp)",
        ),
    ),
    (
        re.compile(
            r"pull access denied|manifest unknown|No such image|repository does not exist|failed to resolve reference|image .* not found",
            re.I,
        ),
        Diagnosis(
            "the engine image is not on this host (and cannot be pulled here)",
            "load it from the offline bundle (deployctl bundle install) or `docker load -i image.tar`",
        ),
    ),
    (
        re.compile(
            r"could not select device driver|nvidia-container-cli|unknown or invalid runtime name: nvidia|no known GPU vendor",
            re.I,
        ),
        Diagnosis(
            "Docker cannot give the container a GPU",
            "install the NVIDIA Container Toolkit and restart Docker (`deployctl doctor`)",
        ),
    ),
    (
        re.compile(r"HF_HUB_OFFLINE|offline mode is enabled|LocalEntryNotFoundError", re.I),
        Diagnosis(
            "the engine tried to download files in offline mode",
            "the model directory lacks files the engine needs (tokenizer?); copy the full model",
        ),
    ),
]


def diagnose(log_text: str) -> list[Diagnosis]:
    """Give the known causes found in a log tail, most specific first (none when nothing matches)."""
    found = []
    for pattern, diagnosis in _RULES:
        if pattern.search(log_text) and diagnosis not in found:
            found.append(diagnosis)
    return found
