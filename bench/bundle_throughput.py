#!/usr/bin/env python3
"""Bundle create and verify throughput, as ratios against plain tools over the same data, in one run.

Data: the simulator image (docker save) and a model folder of MODEL_MB of weights.
- create  vs  `docker save IMAGE | zstd -T0 -3` plus `tar -cf - MODEL | zstd -T0 -3`, then `sync`
  (deployctl fsyncs what it writes, as a bundle bound for a USB stick must be on the device;
  it also hashes every byte, writes the manifest, and stores weights as they are).
- verify  vs  `sha256sum` over the bundle's files (deployctl also checks the signature,
  sizes, paths and that nothing is missing or extra).
Ratio = the plain tools' time / deployctl's time (1.0: as fast; the aim is at least 0.8).
Needs a Docker engine and zstd; builds the simulator image if it is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_MB = int(os.environ.get("MODEL_MB", "768"))


def timed(cmd: list[str] | str, **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main() -> int:
    deployctl = [sys.executable, "-m", "deployctl"]
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from helpers.tinymodel import write_spec, write_tiny_model

    from deployctl.engines.simulator import SIM_IMAGE

    subprocess.run([*deployctl, "image", "build-sim"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        d = Path(tmp)
        model = write_tiny_model(d / "model", files=max(1, MODEL_MB // 256), mib=min(256, MODEL_MB))
        spec = write_spec(d, model)
        subprocess.run([*deployctl, "bundle", "keygen", str(d / "key")], check=True, capture_output=True)
        data = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        image_bytes = len(subprocess.run(["docker", "save", SIM_IMAGE], check=True, capture_output=True).stdout)
        total = data + image_bytes
        subprocess.run("sync", shell=True)

        # Both sides make their output durable: deployctl fsyncs each file, the plain tools end with sync.
        plain_create = timed(
            f"docker save {SIM_IMAGE} | zstd -T0 -3 -q -o {d}/img.tar.zst && "
            f"tar -C {d} -cf - model | zstd -T0 -3 -q -o {d}/model.tar.zst && sync",
            shell=True,
        )
        ours_create = timed(
            [
                *deployctl,
                "bundle",
                "create",
                "-f",
                str(spec),
                "--simulate",
                "--sign",
                str(d / "key"),
                "--wheels",
                "none",
                "-o",
                str(d / "b"),
            ]
        )
        files = [str(p) for p in (d / "b").rglob("*") if p.is_file()]
        bundle_bytes = sum(os.path.getsize(f) for f in files)
        subprocess.run("sync", shell=True)
        plain_verify = timed(["sha256sum", *files])
        ours_verify = timed([*deployctl, "bundle", "verify", str(d / "b"), "--pubkey", str(d / "key.pub")])

    print(
        f"data: image {image_bytes / 1e6:.0f} MB (docker save) + model {data / 1e6:.0f} MB; bundle {bundle_bytes / 1e6:.0f} MB"
    )
    print(
        f"create: deployctl {ours_create:6.2f} s ({total / ours_create / 1e6:6.0f} MB/s)   "
        f"docker save|zstd -T0 + tar|zstd -T0 {plain_create:6.2f} s   ratio {plain_create / ours_create:.2f}"
    )
    print(
        f"verify: deployctl {ours_verify:6.2f} s ({bundle_bytes / ours_verify / 1e6:6.0f} MB/s)   "
        f"sha256sum {plain_verify:6.2f} s   ratio {plain_verify / ours_verify:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
