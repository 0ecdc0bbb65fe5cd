"""Least privilege for each engine's container: user, capabilities, writable paths, limits.

Target-neutral: Compose renders it (user, cap_drop, tmpfs, limits) and so does the Helm chart
(securityContext, memory emptyDirs, resources.limits.memory). What each engine's image writes
and which user it runs as was read from the image's own build files; each engine's profile lives
with the engine (`container_security` in engines/tgi.py, engines/vllm.py). The simulator
(deployctl/images/sim.Dockerfile) runs as nobody (65534) and writes nothing (`simulator` below).

Capabilities: every engine gets `cap_drop: [ALL]` and none back.
  - NET_BIND_SERVICE is not needed for port 80: Docker (20.10+) sets the namespaced sysctl
    net.ipv4.ip_unprivileged_port_start=0 in each container; the stack sets it explicitly too.
  - IPC_LOCK is not needed: CUDA pins host memory through the NVIDIA driver, not mlock(2);
    NCCL over PCIe uses /dev/shm (shm_size), which needs no capability.
  - SYS_NICE, SYS_ADMIN, SYS_PTRACE, CHOWN, SETUID/SETGID, DAC_OVERRIDE: nothing in these
    images changes users, owners or priorities. Without DAC_OVERRIDE, TGI's root cannot read a
    model folder that is not world-readable: keep weights readable (mode 0644 files, 0755 dirs).
Not verified on a GPU host from here (no GPU, no NVIDIA Container Toolkit): the real engines'
start with these settings is to be confirmed there; the simulator's is tested in tests/e2e.
"""

from __future__ import annotations

from deployctl.plan import ContainerSecurity, Scratch

GIB = 1024**3


# An engine: one launcher, one router and one Python shard per GPU (TGI), or one worker per GPU (vLLM), each
# with a thread per core for torch and the tokenizers; 4096 tasks leave room on a 64-core host (pids_limit
# counts threads).
ENGINE_PIDS = 4096
# What a profile says of a user that any uid can be (the images keep nothing in a home of their own).
ANY_UID = "The engine's image runs as any uid (engines/security.py)."
# The simulator is one Python process with a few threads.
SIM_PIDS = 256
SIM_MEMORY = 512 * 1024 * 1024  # measured: 46 MiB RSS at 512 concurrent streams (10x headroom)

# Host memory per shard besides weights: CUDA context and the Python process, about 2-3 GiB in
# TGI's shards (text_generation_server/cli.py serve) and vLLM's workers; 6 GiB is a ceiling
# against a runaway, not an estimate of use.
PER_SHARD = 6 * GIB


def ceiling(weights: int, shards: int, scratch: list[Scratch], shm: int) -> int:
    """Give the memory ceiling of an engine's container: weights, shards, scratch and /dev/shm."""
    # Weights are read by mmap (safetensors safe_open), so resident pages stay below the file
    # size; twice covers a CPU-side copy while GPTQ weights are repacked for the kernels.
    # tmpfs and /dev/shm pages count against the container's memory cgroup too.
    return 2 * weights + shards * PER_SHARD + sum(s.size_bytes for s in scratch) + shm


def simulator() -> ContainerSecurity:
    """Give the simulator's container settings: nobody, a small /tmp, small limits."""
    return ContainerSecurity(
        user="65534:65534",
        user_reason=ANY_UID,
        scratch=[
            Scratch(path="/tmp", size_bytes=16 * 1024 * 1024, why="nothing today; Python's tempfile falls back to it")
        ],
        pids_limit=SIM_PIDS,
        memory_bytes=SIM_MEMORY,
    )


def shm_bytes(size: str | None) -> int:
    """Give the bytes of a Compose shm_size such as '1gb' or '512m' (0 for None)."""
    if not size:
        return 0
    text = size.lower().removesuffix("b")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)
