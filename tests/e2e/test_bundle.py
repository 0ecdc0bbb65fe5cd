"""Bundles on the real engine: the whole offline journey, a damaged bundle, and installs killed midway."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.tinymodel import write_spec, write_tiny_model

from .conftest import deployctl, free_port


def image_present(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def tree(root: Path) -> dict[str, str]:
    """Every file under root (journal aside) with its sha256: two equal trees are equal installs."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".deployctl-install"):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, sim_image: str) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bundle-src")
    model = write_tiny_model(d / "tiny-llama", files=4, mib=24)
    spec = write_spec(d, model, name=f"b{os.getpid()}", port=free_port())
    assert deployctl("bundle", "keygen", str(d / "key")).returncode == 0
    done = deployctl(
        "bundle",
        "create",
        "-f",
        str(spec),
        "--simulate",
        "--sign",
        str(d / "key"),
        "--wheels",
        "none",
        "--split",
        "64M",
        "-o",
        str(d / "llm.tar"),
    )
    assert done.returncode == 0, done.stderr
    return {"dir": d, "index": d / "llm.tar.parts.json", "pub": d / "key.pub", "spec": spec}


def install_args(made: dict[str, Path], target: Path) -> list[str]:
    return [
        "bundle",
        "install",
        str(made["index"]),
        "--pubkey",
        str(made["pub"]),
        "--target",
        str(target),
        "--simulate",
    ]


def install(made: dict[str, Path], target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return deployctl(*install_args(made, target), *extra, timeout=300)


def test_offline_journey_create_verify_install_up_health(made: dict[str, Path], sim_image: str, tmp_path: Path) -> None:
    assert deployctl("bundle", "verify", str(made["index"]), "--pubkey", str(made["pub"])).returncode == 0
    subprocess.run(["docker", "rmi", "--no-prune", sim_image], check=True, capture_output=True)  # ours; no pruning
    assert not image_present(sim_image)
    done = install(made, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert image_present(sim_image)
    spec = tmp_path / "site" / "deployctl.yaml"
    try:
        up = deployctl("up", "-f", str(spec), "--simulate")
        assert up.returncode == 0, up.stderr
        health = deployctl("health", "--stack-dir", str(tmp_path / "site" / "stack"))
        assert health.returncode == 0, health.stdout
    finally:
        deployctl("down", "--stack-dir", str(tmp_path / "site" / "stack"))


def test_a_flipped_byte_stops_install_before_anything_is_loaded_or_written(
    made: dict[str, Path], sim_image: str, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in made["dir"].glob("llm.tar*"):
        (copy / f.name).write_bytes(f.read_bytes())
    first = copy / json.loads((copy / "llm.tar.parts.json").read_text())["parts"][0]["name"]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the image entry
    first.write_bytes(bytes(data))
    subprocess.run(["docker", "rmi", "--no-prune", sim_image], check=True, capture_output=True)  # ours; no pruning
    target = tmp_path / "site"
    done = deployctl(
        "bundle",
        "install",
        str(copy / "llm.tar.parts.json"),
        "--pubkey",
        str(made["pub"]),
        "--target",
        str(target),
        "--simulate",
    )
    assert done.returncode == 1  # verification failed (README's table)
    assert "corrupt" in done.stderr and ("images/" in done.stderr or "part 1" in done.stderr)
    assert not image_present(sim_image)
    assert not (target / "models").exists() and not (target / "stack").exists()
    # the engine gets its image back for the other tests
    assert install(made, tmp_path / "again").returncode == 0


def _refused_before_anything(done: subprocess.CompletedProcess[str], code: int, target: Path, image: str) -> str:
    """The install's one error line; nothing loaded into Docker, nothing written (the target not even made)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == code and len(errors) == 1, done.stderr
    assert not image_present(image)
    assert not target.exists()
    return errors[0]


def _bundle_of(made: dict[str, Path], tmp_path: Path, spec_text: str, env: dict[str, str] | None = None) -> Path:
    spec = tmp_path / "deployctl.yaml"
    spec.write_text(spec_text)
    out = tmp_path / "bundle"
    args = ["-f", str(spec), "--simulate", "--sign", str(made["dir"] / "key"), "--wheels", "none", "-o", str(out)]
    done = deployctl("bundle", "create", *args, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def _install(bundle: Path, made: dict[str, Path], target: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    args = ["bundle", "install", str(bundle), "--pubkey", str(made["pub"]), "--target", str(target), *extra]
    return deployctl(*args, env=env, timeout=300)


def test_a_simulated_bundle_without_simulate_is_refused_before_anything_is_loaded_or_written(
    made: dict[str, Path], sim_image: str, tmp_path: Path
) -> None:
    """#20: it used to load the images, place the model and write deployctl.yaml, then exit 3."""
    if shutil.which("nvidia-smi"):
        pytest.skip("this host has an NVIDIA driver: the bundle would install")
    # As README's `bundle create --simulate` makes it: no gpu_model, so the site plans for its own GPUs.
    text = "\n".join(line for line in made["spec"].read_text().splitlines() if not line.startswith("gpu_model:"))
    bundle = _bundle_of(made, tmp_path, text + "\n")
    subprocess.run(["docker", "rmi", "--no-prune", sim_image], check=True, capture_output=True)  # ours; no pruning
    target = tmp_path / "site"
    line = _refused_before_anything(_install(bundle, made, target), 3, target, sim_image)
    assert "NVIDIA" in line, line
    assert _install(bundle, made, target, "--simulate").returncode == 0  # the engine gets its image back
    assert image_present(sim_image)


def test_a_keyed_bundle_without_its_key_variable_is_refused_before_anything_is_loaded_or_written(
    made: dict[str, Path], sim_image: str, tmp_path: Path
) -> None:
    """#20: it used to place the model first, then exit 2."""
    text = made["spec"].read_text()
    assert text.rstrip().splitlines()[-2] == "serve:"  # the key's line lands in the serve section
    env = {"DEPLOYCTL_E2E_KEY": "k" * 32}
    bundle = _bundle_of(made, tmp_path, text + "  api_key_env: DEPLOYCTL_E2E_KEY\n", env)
    subprocess.run(["docker", "rmi", "--no-prune", sim_image], check=True, capture_output=True)
    target = tmp_path / "site"
    line = _refused_before_anything(_install(bundle, made, target, "--simulate"), 2, target, sim_image)
    assert "DEPLOYCTL_E2E_KEY is not set" in line, line
    done = _install(bundle, made, target, "--simulate", env=env)
    assert done.returncode == 0, done.stderr
    assert image_present(sim_image)


@pytest.mark.parametrize(
    "kill_at", ["staging images/", "copying model file model-00001", "copying model file model-00003", "model in place"]
)
def test_killed_install_finishes_on_rerun_and_equals_an_uninterrupted_one(
    made: dict[str, Path], tmp_path: Path, kill_at: str
) -> None:
    target = tmp_path / "site"
    assert install(made, target).returncode == 0
    reference = tree(target)
    shutil.rmtree(target)
    cmd = [sys.executable, "-m", "deployctl", *install_args(made, target)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if kill_at in line:
            time.sleep(0.05)  # into the step, mid-copy or mid-load
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    rerun = install(made, target)
    assert rerun.returncode == 0, rerun.stderr
    assert tree(target) == reference
    assert not list((target / "models").glob(".*partial*"))


def test_wheels_install_deployctl_with_no_index(made: dict[str, Path], tmp_path: Path) -> None:
    """The site runs `pip install --no-index --find-links <bundle>/wheels deployctl` with no network."""
    out = tmp_path / "with-wheels"
    done = deployctl(
        "bundle", "create", "-f", str(made["spec"]), "--simulate", "--wheels", "auto", "-o", str(out), timeout=600
    )
    assert done.returncode == 0, done.stderr
    wheels = out / "wheels"
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels.glob("*.whl")}
    assert {"deployctl", "pydantic", "click", "cryptography", "zstandard", "aiohttp"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(wheels), "deployctl"],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    version = subprocess.run([str(venv / "bin" / "deployctl"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "deployctl, version" in version.stdout
    assert deployctl("bundle", "verify", str(out), "--insecure-skip-signature").returncode == 0
