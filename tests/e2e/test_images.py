"""Image inspection and slimming on the real engine, with a TGI-shaped image built from Debian packages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.failpoints import Pauses

from deployctl.images.build import DEBIAN_BASE

from .conftest import deployctl, image_ids, remove_images

HERE = Path(__file__).parents[1] / "images"


def build(tag: str, context: Path, dockerfile: str | None = None) -> None:
    cmd = ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={DEBIAN_BASE}", "-t", tag]
    if dockerfile:
        cmd += ["-f", "-"]
    done = subprocess.run([*cmd, str(context)], input=dockerfile, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def slim(source: str, tag: str, *extra: str, profile: str = "tgi-3.3-gptq-ada") -> subprocess.CompletedProcess[str]:
    return deployctl("image", "slim", source, "--profile", profile, "-t", tag, *extra, timeout=600)


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


TEST_TAGS = (
    "deployctl-test/tgi-shaped:3.3",
    "deployctl-test/tgi-shaped:slim",
    "deployctl-test/waste:1",
    "deployctl-test/broken:slim",
    "deployctl-test/never:1",
)


@pytest.fixture(scope="module", autouse=True)
def _remove_test_images() -> Iterator[None]:
    """The images these tests build are theirs to remove."""
    before = image_ids()
    yield
    remove_images([t for t in TEST_TAGS if image_exists(t)], before)


@pytest.fixture(scope="module")
def tgi_shaped(sim_image: str) -> str:
    build("deployctl-test/tgi-shaped:3.3", HERE / "tgi-shaped")
    return "deployctl-test/tgi-shaped:3.3"


def test_inspect_finds_planted_waste_and_matches_docker_history(tmp_path: Path, sim_image: str) -> None:
    dockerfile = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN head -c 7000000 /dev/urandom > /planted && head -c 1000000 /dev/urandom > /overwritten
RUN rm /planted
RUN head -c 500000 /dev/urandom > /overwritten
ENV NOTHING=here
"""
    build("deployctl-test/waste:1", tmp_path, dockerfile)
    done = deployctl("image", "inspect", "deployctl-test/waste:1", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["wasted"] == 7_000_000 + 1_000_000
    layers = data["layers"]
    assert layers[1]["wasted"] == 8_000_000 and "planted" in layers[1]["created_by"]
    history = json.loads(
        subprocess.run(["docker", "image", "inspect", "deployctl-test/waste:1"], capture_output=True, text=True).stdout
    )
    api = subprocess.run(
        ["docker", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", "deployctl-test/waste:1"],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    sizes = [int(json.loads(line)["Size"]) for line in reversed(api)]
    nonzero = [s for s in sizes if s]
    ours = [layer["size"] for layer in layers if layer["size"]]
    assert ours[1:] == nonzero[1:]  # the RUN layers, to the byte
    assert abs(ours[0] - nonzero[0]) / nonzero[0] < 1e-4  # the imported base (links counted slightly apart)
    assert len(history[0]["RootFS"]["Layers"]) == len(layers)


def test_slim_dry_run_reports_and_builds_nothing(tgi_shaped: str) -> None:
    done = slim(tgi_shaped, "deployctl-test/never:1", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    groups = {g["name"]: g["bytes"] for g in data["groups"]}
    assert all(v > 0 for v in groups.values()), groups
    assert data["removed_bytes"] > 100_000_000 and not image_exists("deployctl-test/never:1")


def dangling() -> set[str]:
    out = subprocess.run(
        ["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true"], capture_output=True, text=True
    )
    return set(out.stdout.split())


def test_slim_of_an_image_of_another_family_is_refused_in_one_line(sim_image: str) -> None:
    before = dangling()
    done = slim(sim_image, "deployctl-test/never:1")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is not a ghcr.io/huggingface/text-generation-inference" in errors[0], done.stderr
    assert done.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in done.stderr
    assert not image_exists("deployctl-test/never:1") and dangling() == before


def test_slim_removes_verifies_keeps_config_and_still_starts(tgi_shaped: str) -> None:
    before = dangling()
    done = slim(tgi_shaped, "deployctl-test/tgi-shaped:slim", "--json")
    # The removal stage (the source's size) does not stay behind. (`<=`: a cached build may reuse an identical
    # result an earlier run left untagged; tagging it then takes it off the dangling list.)
    assert dangling() <= before
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert all(c["ok"] for c in data["checks"]) and data["size_after"] < 0.8 * data["size_before"]
    before = json.loads(
        subprocess.run(["docker", "image", "inspect", tgi_shaped], capture_output=True, text=True).stdout
    )[0]["Config"]
    after_all = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "deployctl-test/tgi-shaped:slim"], capture_output=True, text=True
        ).stdout
    )[0]
    after = after_all["Config"]
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "ExposedPorts"):
        assert after[key] == before[key], key
    assert before["Labels"].items() <= after["Labels"].items()
    assert len(after_all["RootFS"]["Layers"]) == 1
    run = subprocess.run(
        ["docker", "run", "--rm", "deployctl-test/tgi-shaped:slim", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0 and "Usage: text-generation-launcher" in run.stdout
    listing = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "deployctl-test/tgi-shaped:slim",
            "-c",
            "ls /usr/src/.venv/lib/python3.11/site-packages; ls /var/cache/apt/archives /root/.cache 2>&1; command -v gcc",
        ],
        capture_output=True,
        text=True,
    ).stdout
    assert (
        "eetq" not in listing and "mamba_ssm" not in listing and "marlin_kernels" in listing and "flashinfer" in listing
    )
    assert ".deb" not in listing and "/usr/bin/gcc" in listing
    assert "deployctl-slim-tmp" not in subprocess.run(["docker", "images"], capture_output=True, text=True).stdout


def test_failed_verification_leaves_no_tag(tgi_shaped: str, tmp_path: Path) -> None:
    profile = tmp_path / "breaks-gptq.yaml"
    builtin = (Path(__file__).parents[2] / "deployctl" / "images" / "profiles" / "tgi-3.3-gptq-ada.yaml").read_text()
    profile.write_text(
        builtin.replace(
            "      - /usr/src/.venv/lib/python3.*/site-packages/megablocks*\n",
            "      - /usr/src/.venv/lib/python3.*/site-packages/megablocks*\n"
            "      - /usr/src/.venv/lib/python3.*/site-packages/text_generation_server/layers/gptq\n",
        )
    )
    before = dangling()
    done = slim(tgi_shaped, "deployctl-test/broken:slim", profile=str(profile))
    assert dangling() == before
    assert done.returncode == 1
    assert "verification 'GPTQ and Marlin layers import' failed" in done.stderr and "nothing was tagged" in done.stderr
    assert not image_exists("deployctl-test/broken:slim")
    assert "deployctl-slim-tmp" not in subprocess.run(["docker", "images"], capture_output=True, text=True).stdout


def test_ctrl_c_during_the_build_leaves_no_tag_and_no_image(tgi_shaped: str, tmp_path: Path) -> None:
    """Ctrl-C while the engine builds the flattened layer: exit 130, and once deployctl has exited every
    image the build made is gone (the engine's own build finished first, so none appears later)."""
    pauses = Pauses(tmp_path, "slim-flatten")
    before = image_ids()
    cmd = [sys.executable, "-m", "deployctl", "image", "slim", tgi_shaped, "--profile", "tgi-3.3-gptq-ada"]
    proc = subprocess.Popen(
        [*cmd, "-t", "deployctl-test/never:1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **pauses.env},
    )
    pauses.wait("slim-flatten", proc)  # the flattening stage has begun, and deployctl waits there
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130 and "error: interrupted" in rest and "Traceback" not in rest, rest
    assert "letting the engine finish this build" in rest
    assert not image_exists("deployctl-test/never:1")
    assert image_ids() == before  # neither the result nor any step's image (cached steps were there before)
