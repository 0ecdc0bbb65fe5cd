#!/usr/bin/env python3
"""Size after / size before for `deployctl image slim --profile tgi-3.3-gptq-ada`.

MEASURED: on the TGI-shaped test image (tests/images/tgi-shaped: TGI 3.3's paths with stand-in
contents), built here from Debian packages, slimmed and verified for real.
ESTIMATED: for the real ghcr.io/huggingface/text-generation-inference:3.3.x image, from the
profile's per-group `estimate_bytes` and `estimate_image_bytes`, which come from TGI's Dockerfile
and published package sizes; this workplace cannot pull the real image to measure it.
Needs a Docker engine (and the Debian base: `deployctl image build-base`). Everything it builds
goes under tags of the run's own and is removed at the end, untagged images included (nothing else).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _image_ids() -> set[str]:
    done = subprocess.run(["docker", "images", "-aq", "--no-trunc"], check=True, capture_output=True, text=True)
    return set(done.stdout.split())


def _remove_what_we_made(tags: list[str], before: set[str]) -> None:
    """Untag our tags, then remove the untagged images made since `before` (children first), and nothing
    else: never prune, since a cached build step may be an image the user's own builds made."""
    subprocess.run(["docker", "rmi", "--no-prune", *tags], capture_output=True)
    for _ in range(30):
        listed = subprocess.run(
            ["docker", "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}"],
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        ours = [line.split()[0] for line in listed if line.split()[0] not in before and line.endswith("<none>")]
        if not ours:
            return
        for image_id in ours:
            subprocess.run(["docker", "rmi", "--no-prune", image_id], capture_output=True)


def main() -> int:
    from deployctl.images.build import DEBIAN_BASE

    if subprocess.run(["docker", "image", "inspect", DEBIAN_BASE], capture_output=True).returncode != 0:
        print(f"{DEBIAN_BASE} is not here: run `deployctl image build-base` first", file=sys.stderr)
        return 3
    run = uuid.uuid4().hex[:8]  # tags of this run's own: what it made, it removes
    src, out = f"deployctl-bench/tgi-shaped:{run}", f"deployctl-bench/tgi-shaped:{run}-slim"
    before = _image_ids()
    try:
        return _measure(src, out)
    finally:
        _remove_what_we_made([src, out], before)


def _measure(src: str, out: str) -> int:
    from deployctl.images.build import DEBIAN_BASE
    from deployctl.images.slim import load_profile

    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "--build-arg",
            f"BASE_IMAGE={DEBIAN_BASE}",
            "-t",
            src,
            str(ROOT / "tests" / "images" / "tgi-shaped"),
        ],
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "-m", "deployctl", "image", "slim", src, "--profile", "tgi-3.3-gptq-ada", "-t", out, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(done.stdout)
    before, after = data["size_before"], data["size_after"]
    print(
        f"MEASURED  TGI-shaped test image: {before / 1e6:,.0f} MB -> {after / 1e6:,.0f} MB, ratio {after / before:.2f}"
    )
    for g in data["groups"]:
        print(f"          {g['name']:55s} {g['bytes'] / 1e6:8,.1f} MB")
    profile = load_profile("tgi-3.3-gptq-ada")
    total = profile.estimate_image_bytes or 0
    removed = sum(g.estimate_bytes or 0 for g in profile.groups)
    print(
        f"ESTIMATED real TGI 3.3.x image: {total / 1e9:,.1f} GB -> {(total - removed) / 1e9:,.1f} GB, "
        f"ratio {(total - removed) / total:.2f} (from the profile's estimates, not measured)"
    )
    for g in profile.groups:
        print(f"          {g.name:55s} {(g.estimate_bytes or 0) / 1e6:8,.0f} MB (estimate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
