"""Lay out a TGI 3.x-shaped filesystem (same paths, stand-in contents of realistic relative size)."""

import os
import sys
from pathlib import Path

SP = Path("/usr/src/.venv/lib/python3.11/site-packages")
MB = 1024 * 1024


def blob(path: str | Path, mb: float) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(os.urandom(int(mb * MB)))


def text(path: str | Path, body: str, mode: int = 0o644) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(body)
    p.chmod(mode)


def package(name: str, so_mb: float, pycache_mb: float = 0.5, tests_mb: float = 0.0) -> None:
    text(SP / name / "__init__.py", f"NAME = {name!r}\n")
    blob(SP / name / "_C.cpython-311-x86_64-linux-gnu.so", so_mb)
    if pycache_mb:
        blob(SP / name / "__pycache__" / "__init__.cpython-311.pyc", pycache_mb)
    if tests_mb:
        blob(SP / name / "tests" / "test_all.py", tests_mb)


def toolchain() -> None:
    """build-essential as TGI's last stage installs it (Triton needs a C compiler), plus apt's leftovers."""
    blob("/usr/lib/gcc/x86_64-linux-gnu/12/cc1", 12)
    text("/usr/bin/gcc-12", "#!/bin/sh\necho 'gcc (stand-in) 12.2.0'\n", 0o755)
    os.symlink("gcc-12", "/usr/bin/gcc")
    for h in ("Python.h", "stdio_ext.h", "cuda_fake.h"):
        blob(f"/usr/include/{h}", 0.2)
    blob("/usr/lib/x86_64-linux-gnu/libstdc++_fake.a", 10)
    blob("/usr/lib/x86_64-linux-gnu/libpython3.11_fake.a", 8)
    for deb in ("g++-12", "gcc-12", "libstdc++-12-dev", "cpp-12"):
        blob(f"/var/cache/apt/archives/{deb}_12.2.0_amd64.deb", 5)
    blob("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", 6)


def venv() -> None:
    text("/usr/src/.venv/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n")
    os.makedirs("/usr/src/.venv/bin", exist_ok=True)
    os.symlink("/usr/bin/python3", "/usr/src/.venv/bin/python")
    tgs = SP / "text_generation_server"
    for mod in (
        "__init__.py",
        "layers/__init__.py",
        "layers/gptq/__init__.py",
        "layers/marlin/__init__.py",
        "layers/awq/__init__.py",
        "models/__init__.py",
        "cli.py",
    ):
        text(tgs / mod, "")
    blob(tgs / "layers" / "__pycache__" / "__init__.cpython-311.pyc", 1)
    # kept: what GPTQ on Ada needs
    package("marlin_kernels", 14)
    package("exllamav2_kernels", 10)
    package("flash_attn", 16)
    package("flashinfer", 14)
    package("triton", 12)
    package("torch", 30, pycache_mb=3, tests_mb=4)
    blob(SP / "torch" / "testing" / "_internal" / "common_utils.py", 4)
    blob(SP / "torch" / "include" / "ATen" / "ops.h", 6)
    package("numpy", 6, tests_mb=3)
    blob(SP / "nvidia" / "cublas" / "lib" / "libcublas.so.12", 12)
    blob(SP / "nvidia" / "cublas" / "lib" / "libcublas_static.a", 10)
    # other quantization methods and model families
    package("awq_inference_engine", 12)
    package("eetq", 10)
    package("fbgemm_gpu", 16)
    package("bitsandbytes", 10)
    package("exllama_kernels", 6)
    package("mamba_ssm", 10)
    package("causal_conv1d", 4)
    package("megablocks", 8)


def caches() -> None:
    blob("/root/.cache/pip/http-v2/a/b/c/0123456789abcdef.body", 12)
    blob("/root/.cache/uv/wheels-v1/pypi/torch/torch-2.6.0.whl", 10)


def binaries() -> None:
    launcher = """#!/usr/src/.venv/bin/python
import sys
if "--help" in sys.argv:
    print("Text Generation Launcher (stand-in)\\n\\nUsage: text-generation-launcher [OPTIONS]")
    sys.exit(0)
import text_generation_server.layers.gptq  # noqa: F401  the real launcher starts the Python shards
print("starting", " ".join(sys.argv[1:]))
"""
    text("/usr/local/bin/text-generation-launcher", launcher, 0o755)
    for name in ("text-generation-router", "text-generation-benchmark"):
        text(f"/usr/local/bin/{name}", "#!/bin/sh\necho stand-in\n", 0o755)
        blob(f"/usr/local/lib/{name}.data", 4)


{"toolchain": toolchain, "venv": venv, "caches": caches, "binaries": binaries}[sys.argv[1]]()
