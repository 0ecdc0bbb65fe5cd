#!/usr/bin/env python3
"""Bundle create and verify throughput, as ratios against plain tools over the same data, in one run.

Data: a test image built here (`docker import` of a rootfs plus one `docker build` layer, IMAGE_MB
in all, half random and half repetitive bytes, named deployctl-test/bench-<pid>, removed at the
end) and a model folder of MODEL_MB of weights.
- create  vs  `docker save IMAGE | zstd -T0 -3` plus `tar -cf - MODEL | zstd -T0 -3`, then `sync`
  (deployctl fsyncs what it writes, as a bundle bound for a USB stick must be on the device;
  it also hashes every byte, splits the image into its layers, writes the manifest and
  signs it, and stores weights as they are).
- verify  vs  `sha256sum` over the bundle's files (deployctl also checks the signature,
  decompresses nothing, and checks sizes, paths and that nothing is missing or extra).
Ratio = the plain tools' time / deployctl's time (1.0: as fast; the aim: create >= 0.9, verify >= 1).
Each side runs ROUNDS times, alternating; the medians are compared. Needs Docker and zstd;
run it under the Docker lock: flock /tmp/deployctl-docker.lock python bench/bundle_throughput.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_MB = int(os.environ.get("MODEL_MB", "768"))
IMAGE_MB = int(os.environ.get("IMAGE_MB", "256"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def timed(cmd: list[str] | str, **kw: object) -> float:
    subprocess.run("sync", shell=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def _data(path: Path, mib: int) -> None:
    """Half random bytes, half repetitive text: roughly how image layers compress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = mib * 1024 * 1024 // 2
    line = b"usr/lib/python3/dist-packages/some/module.py: def function(argument): return argument\n"
    path.write_bytes(os.urandom(half) + (line * (half // len(line) + 1))[:half])


def build_image(d: Path, tag: str) -> None:
    rootfs = d / "rootfs"
    _data(rootfs / "opt" / "base.bin", IMAGE_MB // 2)
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(d / "rootfs.tar"), "."], check=True)
    subprocess.run(["docker", "import", str(d / "rootfs.tar"), f"{tag}-base"], check=True, capture_output=True)
    ctx = d / "ctx"
    _data(ctx / "engine.bin", IMAGE_MB - IMAGE_MB // 2)
    (ctx / "Dockerfile").write_text(f"FROM {tag}-base\nCOPY engine.bin /opt/engine.bin\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    shutil.rmtree(rootfs)
    (d / "rootfs.tar").unlink()
    shutil.rmtree(ctx)


def main() -> int:
    deployctl = [sys.executable, "-m", "deployctl"]
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from helpers.tinymodel import write_spec, write_tiny_model

    tag = f"deployctl-test/bench-{os.getpid()}:1"
    plain_c, ours_c, plain_v, ours_v = [], [], [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        d = Path(tmp)
        try:
            build_image(d, tag)
            model = write_tiny_model(d / "model", files=max(1, MODEL_MB // 256), mib=min(256, MODEL_MB))
            spec = write_spec(d, model)
            subprocess.run([*deployctl, "bundle", "keygen", str(d / "key")], check=True, capture_output=True)
            data = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
            image_bytes = len(subprocess.run(["docker", "save", tag], check=True, capture_output=True).stdout)
            total = data + image_bytes
            for i in range(ROUNDS):
                plain_c.append(
                    timed(
                        f"docker save {tag} | zstd -T0 -3 -q -o {d}/img.tar.zst && "
                        f"tar -C {d} -cf - model | zstd -T0 -3 -q -o {d}/model.tar.zst && sync",
                        shell=True,
                    )
                )
                (d / "img.tar.zst").unlink()
                (d / "model.tar.zst").unlink()
                out = d / f"b{i}"
                args = ["-f", str(spec), "--simulate", "--image", tag, "--sign", str(d / "key"), "--wheels", "none"]
                ours_c.append(timed([*deployctl, "bundle", "create", *args, "-o", str(out)]))
                files = [str(p) for p in out.rglob("*") if p.is_file()]
                bundle_bytes = sum(os.path.getsize(f) for f in files)
                plain_v.append(timed(["sha256sum", *files]))
                ours_v.append(timed([*deployctl, "bundle", "verify", str(out), "--pubkey", str(d / "key.pub")]))
                shutil.rmtree(out)
        finally:
            for name in (tag, f"{tag}-base"):
                subprocess.run(["docker", "rmi", "-f", name], capture_output=True)

    pc, oc, pv, ov = (statistics.median(x) for x in (plain_c, ours_c, plain_v, ours_v))
    print(
        f"data: image {image_bytes / 1e6:.0f} MB (docker save) + model {data / 1e6:.0f} MB; bundle {bundle_bytes / 1e6:.0f} MB"
    )
    print(f"medians of {ROUNDS} alternating rounds; {os.cpu_count()} CPUs")
    print(
        f"create: deployctl {oc:6.2f} s ({total / oc / 1e6:6.0f} MB/s)   "
        f"docker save|zstd -T0 + tar|zstd -T0 + sync {pc:6.2f} s ({total / pc / 1e6:6.0f} MB/s)   ratio {pc / oc:.2f}"
    )
    print(
        f"verify: deployctl {ov:6.2f} s ({bundle_bytes / ov / 1e6:6.0f} MB/s)   "
        f"sha256sum {pv:6.2f} s ({bundle_bytes / pv / 1e6:6.0f} MB/s)   ratio {pv / ov:.2f}"
    )
    print("create rounds (plain/ours):", " ".join(f"{p:.2f}/{o:.2f}" for p, o in zip(plain_c, ours_c, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
