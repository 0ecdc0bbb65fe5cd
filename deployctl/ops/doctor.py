"""`deployctl doctor`: what is wrong with this host, one check a line, each with a fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from deployctl import fsio
from deployctl.docker import EngineInfo
from deployctl.errors import DeployctlError
from deployctl.gpus.gpu import GiB, Host
from deployctl.spec import DeploymentSpec

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Context:
    spec: DeploymentSpec
    host: Host | None = None
    host_error: str | None = None
    docker_info: EngineInfo | None = None
    docker_error: str | None = None
    compose_version: str | None = None
    open_stack: str | None = None  # "bind:port" of a running stack that serves the network without a key


def _nvml(ctx: Context) -> list[Check]:
    if ctx.host is None:
        return [
            Check(
                "nvidia driver",
                "FAIL",
                ctx.host_error or "NVML unavailable",
                "install the NVIDIA driver (nvidia-smi must work); planning for another host needs --gpu-model",
            ),
            Check(
                "gpus",
                "FAIL",
                "no GPU can be seen without the driver",
                "fix the driver first; `deployctl up --simulate` needs no GPU",
            ),
        ]
    h = ctx.host
    out = [Check("nvidia driver", "OK", f"driver {h.driver_version}, CUDA {h.cuda_driver_version}")]
    if not h.gpus:
        return [
            *out,
            Check("gpus", "FAIL", "the driver sees no GPU", "check `nvidia-smi` and the PCIe slot / power cables"),
        ]
    for g in h.gpus:
        cc = g.compute_capability or "?"
        ok = cc != "?" and float(cc) >= 8.0
        out.append(
            Check(
                f"gpu {g.index}",
                "OK" if ok else "WARN",
                f"{g.name}, compute {cc}, {g.memory_total / GiB:.1f} GiB, {g.uuid}",
                "" if ok else "the engines' GPTQ/AWQ kernels (Marlin) want compute capability 8.0 or newer",
            )
        )
    if len(h.gpus) > 1:
        if h.p2p:
            out.append(Check("p2p", "OK", "peer-to-peer works between every pair: sharding can use it"))
        else:
            out.append(
                Check(
                    "p2p",
                    "WARN",
                    "no peer-to-peer between the GPUs: sharded traffic goes through host memory",
                    "normal for RTX 4090s; deployctl renders NCCL_P2P_DISABLE=1 and shared memory for sharded"
                    " stacks of both engines, and --disable-custom-all-reduce for vLLM",
                )
            )
    off = [str(g.index) for g in h.gpus if g.persistence_mode is False]
    out.append(
        Check(
            "persistence mode",
            "WARN" if off else "OK",
            f"off on GPU {', '.join(off)}" if off else "on",
            "`deployctl power set W --persist` enables it at boot" if off else "",
        )
    )
    want = ctx.spec.power.limit_watts
    if want:
        wrong = [
            f"GPU {g.index} at {g.power.enforced_limit_w:g} W"
            for g in h.gpus
            if g.power.enforced_limit_w and abs(g.power.enforced_limit_w - want) >= 1
        ]
        out.append(
            Check(
                "power limits",
                "WARN" if wrong else "OK",
                f"spec asks {want} W; " + ", ".join(wrong) if wrong else f"{want} W on every GPU, as the spec asks",
                f"sudo deployctl power set {want} --persist" if wrong else "",
            )
        )
    else:
        limits = ", ".join(f"{g.power.enforced_limit_w:g} W" for g in h.gpus if g.power.enforced_limit_w)
        out.append(Check("power limits", "OK", f"{limits or 'unknown'} (no policy in the spec)"))
    return out


def _passed_or_failed(name: str, ok: bool, *, passed: str, failed: str, hint: str) -> Check:
    """Give the check `name`: OK saying what passed, else FAIL saying what is wrong and how to fix it."""
    return Check(name, "OK", passed) if ok else Check(name, "FAIL", failed, hint)


def _docker(ctx: Context) -> list[Check]:
    out = []
    if ctx.docker_info is None:
        out.append(
            Check("docker engine", "FAIL", ctx.docker_error or "not reachable", "start it: systemctl start docker")
        )
    else:
        info = ctx.docker_info
        out.append(Check("docker engine", "OK", f"Docker {info.server_version}, root {info.root_dir}"))
    version = ctx.compose_version
    major = (version or "").lstrip("v").split(".")[0]
    out.append(
        _passed_or_failed(
            "compose v2",
            major.isdigit() and int(major) >= 2,
            passed=f"docker compose {version}",
            failed="docker compose (v2 plugin) not found",
            hint="install docker-compose-plugin (Debian: docker-compose from trixie)",
        )
    )
    sock = Path("/var/run/docker.sock")
    out.append(
        _passed_or_failed(
            "docker socket",
            sock.exists() and os.access(sock, os.R_OK | os.W_OK),
            passed=f"{sock} is usable by this user",
            failed=f"{sock} is missing or not writable by this user",
            hint="add the user to the docker group, or use sudo",
        )
    )
    runtimes = ctx.docker_info.runtimes if ctx.docker_info else []
    cdi = [p for p in (Path("/etc/cdi/nvidia.yaml"), Path("/var/run/cdi/nvidia.yaml")) if p.exists()]
    if "nvidia" in runtimes or cdi:
        how = "nvidia runtime" if "nvidia" in runtimes else f"CDI spec {cdi[0]}"
        out.append(Check("nvidia container toolkit", "OK", how))
    else:
        out.append(
            Check(
                "nvidia container toolkit",
                "FAIL",
                "Docker has no nvidia runtime and no CDI spec",
                "install nvidia-container-toolkit, then `nvidia-ctk runtime configure --runtime=docker` and restart Docker",
            )
        )
    return out


def _disk(ctx: Context, need_bytes: int | None) -> list[Check]:
    out = []
    places = {"stack dir": ctx.spec.stack_dir.absolute()}
    if ctx.spec.model.path:
        places["models"] = ctx.spec.model.path.absolute()
    if ctx.docker_info and ctx.docker_info.root_dir:
        places["images"] = Path(ctx.docker_info.root_dir)
    for label, path in places.items():
        free = fsio.free_bytes(path)
        want = 20 * GiB if label == "images" else (need_bytes or GiB)
        status: Status = "OK" if free >= want else "WARN"
        out.append(
            Check(
                f"disk ({label})",
                status,
                f"{free / GiB:.0f} GiB free at {path}",
                "" if status == "OK" else f"free at least {want / GiB:.0f} GiB there",
            )
        )
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_frsize * st.f_blocks
        ok = shm >= GiB
        out.append(
            Check(
                "/dev/shm",
                "OK" if ok else "WARN",
                f"{shm / GiB:.1f} GiB",
                "" if ok else "the stack sets shm_size for sharded engines; a larger host /dev/shm helps other tools",
            )
        )
    except OSError:
        out.append(Check("/dev/shm", "WARN", "not mounted", "mount a tmpfs on /dev/shm"))
    return out


def _port(ctx: Context, port_free: Callable[[str, int], bool]) -> Check:
    s = ctx.spec.serve
    try:
        free = port_free(s.bind, s.port)
    except DeployctlError as exc:
        return Check("serving port", "FAIL", exc.message, "set serve.bind to an address of this host")
    if free:
        return Check("serving port", "OK", f"{s.bind}:{s.port} is free")
    return Check(
        "serving port",
        "WARN",
        f"{s.bind}:{s.port} is in use (by a running stack, or another program)",
        "`deployctl status` tells if it is ours; else choose serve.port",
    )


def _exposure(ctx: Context) -> Check:
    if ctx.open_stack is None:
        return Check("exposure", "OK", "no running stack serves the network without an API key")
    return Check(
        "exposure",
        "FAIL",
        f"the stack in {ctx.spec.stack_dir} serves {ctx.open_stack} to the network without an API key",
        "set serve.api_key_env (or api_key_file) and run `deployctl up`, or bind 127.0.0.1",
    )


def run(ctx: Context, port_free: Callable[[str, int], bool], need_bytes: int | None = None) -> list[Check]:
    """Give every check, GPUs first."""
    return [*_nvml(ctx), *_docker(ctx), *_disk(ctx, need_bytes), _port(ctx, port_free), _exposure(ctx)]


def gather(spec: DeploymentSpec) -> Context:
    """Give the facts the checks read: GPUs through NVML, the Docker engine, the Compose plugin."""
    from deployctl import docker
    from deployctl.docker import compose
    from deployctl.hardware import inventory

    ctx = Context(spec=spec)
    try:
        ctx.host = inventory.local_host()
    except DeployctlError as exc:
        ctx.host_error = exc.message
    try:
        ctx.docker_info = docker.info()
    except DeployctlError as exc:
        ctx.docker_error = exc.message
    ctx.compose_version = compose.version()
    if ctx.docker_info is not None:
        ctx.open_stack = _open_stack(spec.stack_dir)
    return ctx


def _open_stack(stack_dir: Path) -> str | None:
    """Give "bind:port" when the stack in `stack_dir` runs and serves the network without an API key."""
    from deployctl import stackdir
    from deployctl.ops.upgrade import is_running, open_to_network

    try:
        found = stackdir.read_stack(stack_dir.absolute())
    except DeployctlError:
        return None
    if found is None or not open_to_network(found.plan.bind, found.plan.api_key):
        return None
    if not is_running(found.info.project):
        return None
    return f"{found.plan.bind}:{found.plan.port}"


def doctor(spec_path: Path | None) -> list[Check]:
    """Give every check of this host for the spec at `spec_path` (or the defaults)."""
    from deployctl import spec
    from deployctl.ops.stack import port_free

    return run(gather(spec.load(spec_path)), port_free)
