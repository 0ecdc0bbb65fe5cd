"""Delta bundles against a real Docker engine: layer-level images, --base, install from the site or a base bundle.

Two images are built here from one locally made base (`docker import` of a small rootfs with
random bytes, then `docker build`): both share the base and a large layer and differ in one
small layer. A model's second revision changes one shard of twelve. Every Docker object is
named `deployctl-test/delta-<pid>-...` and removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.tinymodel import write_spec, write_tiny_model

from .conftest import deployctl

PREFIX = f"deployctl-test/delta-{os.getpid()}"
SHARDS, SHARD_MIB = 12, 8


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_layers(tag: str) -> tuple[str, list[str]]:
    """The image's ID (its config digest) and its layers' diff_ids, as the engine holds them."""
    data = json.loads(docker("image", "inspect", tag).stdout)[0]
    return data["Id"], data["RootFS"]["Layers"]


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _random_file(path: Path, mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(mib * 1024 * 1024))


@pytest.fixture(scope="module")
def test_images(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("images")
    rootfs = d / "rootfs"
    _random_file(rootfs / "opt" / "base.bin", 16)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "os-release").write_text("ID=deployctl-test\n")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(d / "rootfs.tar"), "."], check=True)
    tags = {
        "base": f"{PREFIX}-base:1",
        "mid": f"{PREFIX}-mid:1",
        "app1": f"{PREFIX}-app:1",
        "app2": f"{PREFIX}-app:2",
    }
    try:
        docker("import", str(d / "rootfs.tar"), tags["base"])
        mid = d / "mid"
        _random_file(mid / "engine.bin", 40)
        (mid / "Dockerfile").write_text(f"FROM {tags['base']}\nCOPY engine.bin /opt/engine.bin\n")
        docker("build", "-q", "-t", tags["mid"], str(mid))
        for n in ("1", "2"):
            app = d / f"app{n}"
            app.mkdir()
            (app / "version.txt").write_text(f"simulator build {n}\n")
            (app / "Dockerfile").write_text(
                f'FROM {tags["mid"]}\nCOPY version.txt /opt/version.txt\nCMD ["/opt/engine.bin"]\n'
            )
            docker("build", "-q", "-t", tags[f"app{n}"], str(app))
        yield tags
    finally:
        for tag in ("app1", "app2", "mid", "base"):
            docker("rmi", "-f", tags[tag], check=False)


@pytest.fixture(scope="module")
def made(test_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Full bundles of revisions 1 and 2, and the delta of 2 over 1."""
    d = tmp_path_factory.mktemp("delta-src")
    assert deployctl("bundle", "keygen", str(d / "key")).returncode == 0
    rev1 = write_tiny_model(d / "rev1" / "tiny-llama", files=SHARDS, mib=SHARD_MIB)
    rev2 = Path(shutil.copytree(rev1, d / "rev2" / "tiny-llama"))
    changed = rev2 / "model-00005.safetensors"
    data = bytearray(changed.read_bytes())
    data[-4096:] = os.urandom(4096)  # a fine-tuned revision: same shape, other weights
    changed.write_bytes(bytes(data))
    spec1 = write_spec(d / "rev1", rev1, name="delta")
    spec2 = write_spec(d / "rev2", rev2, name="delta")
    out = {"dir": d, "pub": d / "key.pub", "key": d / "key"}
    for name, spec, image, extra in (
        ("full1", spec1, test_images["app1"], []),
        ("full2", spec2, test_images["app2"], []),
        ("delta2", spec2, test_images["app2"], ["--base", str(d / "full1")]),
    ):
        args = ["-f", str(spec), "--simulate", "--image", image, "--sign", str(d / "key"), "--wheels", "none"]
        done = deployctl("bundle", "create", *args, "-o", str(d / name), *extra, timeout=600)
        assert done.returncode == 0, done.stderr
        out[name] = d / name
    return out


def install(made: dict[str, Path], bundle: str, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [str(made[bundle]), "--pubkey", str(made["pub"]), "--target", str(target), "--simulate", *extra]
    return deployctl("bundle", "install", *args, timeout=600)


def revision_1_at(site: Path, made: dict[str, Path], test_images: dict[str, str]) -> tuple[str, tuple[str, list[str]]]:
    """Install revision 1 at `site`, then remove revision 2's image (a site that never had it); give that image's
    tag and its layers as they were built, for the install of revision 2 to be compared with."""
    app2 = test_images["app2"]
    reference = image_layers(app2)
    assert install(made, "full1", site).returncode == 0
    docker("rmi", app2)
    return app2, reference


def test_a_delta_is_under_a_tenth_of_the_full_bundle(made: dict[str, Path]) -> None:
    full, delta = size_of(made["full2"]), size_of(made["delta2"])
    print(f"\nfull bundle of revision 2: {full / 1e6:.1f} MB; delta over revision 1: {delta / 1e6:.1f} MB")
    assert delta < 0.1 * full
    manifest = json.loads((made["delta2"] / "manifest.json").read_text())
    assert len([b for b in manifest["blobs"] if b["carried"]]) == 2  # the changed layer and the new config
    assert [f["path"].rsplit("/", 1)[1] for f in manifest["entries"] if f["kind"] == "model"] == [
        "model-00005.safetensors"
    ]
    assert (
        manifest["base"]["manifest_sha256"]
        == hashlib.sha256((made["full1"] / "manifest.json").read_bytes()).hexdigest()
    )


def test_bundle_diff_names_what_the_upgrade_carries(made: dict[str, Path]) -> None:
    done = deployctl("bundle", "diff", str(made["full1"]), str(made["full2"]), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    changed = {(c["kind"], c["name"]): c["change"] for c in result["changes"] if c["change"] != "same"}
    assert changed[("model file", "model-00005.safetensors")] == "changed"
    assert [k for k in changed if k[0] == "model file"] == [("model file", "model-00005.safetensors")]
    assert [c for k, c in changed.items() if k[0] == "image"] == ["changed"]
    assert sum(1 for c in result["changes"] if c["kind"] == "layer") == 1
    assert result["delta_bytes"] < 0.1 * result["full_bytes"]


def test_delta_on_the_site_equals_the_full_install(
    made: dict[str, Path], test_images: dict[str, str], tmp_path: Path
) -> None:
    site, full = tmp_path / "site", tmp_path / "full"
    app2, reference_image = revision_1_at(site, made, test_images)
    done = install(made, "delta2", site)
    assert done.returncode == 0, done.stderr
    assert image_layers(app2) == reference_image
    delta_tree = tree(site / "models")
    docker("rmi", app2)
    done = install(made, "full2", full)
    assert done.returncode == 0, done.stderr
    assert image_layers(app2) == reference_image
    assert delta_tree == tree(full / "models") and len(delta_tree) == SHARDS + 2
    assert (site / "deployctl.yaml").read_bytes() == (full / "deployctl.yaml").read_bytes()


def _image_saves(since: float, until: float) -> list[str]:
    """The `docker save`s the engine reports between two times (its own event log)."""
    done = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=image", "--filter", "event=save", "--format", "{{.Actor.ID}}",
    )  # fmt: skip
    return done.stdout.split()


def test_a_delta_installs_on_the_site_reading_no_image_about_as_fast_as_with_its_base_bundle(
    made: dict[str, Path], test_images: dict[str, str], tmp_path: Path
) -> None:
    """#20: the site install took its layers by `docker save` of three whole images (17.3 s against 4.0 s)."""
    site, other = tmp_path / "site", tmp_path / "other"
    app2, reference_image = revision_1_at(site, made, test_images)
    started = time.time()
    done = install(made, "delta2", site)
    on_site = time.time() - started
    assert done.returncode == 0, done.stderr
    assert _image_saves(started - 1, time.time() + 1) == []  # no image was read back from the engine
    assert "layer(s) the engine holds are taken by digest" in done.stderr, done.stderr
    assert image_layers(app2) == reference_image
    docker("rmi", app2)
    started = time.time()
    done = install(made, "delta2", other, "--base", str(made["full1"]))
    with_base = time.time() - started
    assert done.returncode == 0, done.stderr
    assert image_layers(app2) == reference_image and tree(site / "models") == tree(other / "models")
    print(f"\ndelta install on the site: {on_site:.1f} s; the same delta given --base: {with_base:.1f} s "
          f"(ratio {on_site / with_base:.2f})")  # fmt: skip


def test_a_delta_for_a_1000_byte_change_with_the_same_wheels_is_under_10_mb(
    made: dict[str, Path], test_images: dict[str, str], tmp_path: Path
) -> None:
    """#20: the delta carried every wheel again (75 MB, 67 MB of them wheels). Wheels are pip's own (PyPI)."""
    d = made["dir"]
    rev3 = Path(shutil.copytree(d / "rev1" / "tiny-llama", tmp_path / "rev3" / "tiny-llama"))
    shard = rev3 / "model-00003.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1000:] = os.urandom(1000)
    shard.write_bytes(bytes(data))
    sizes = {}
    for name, model, extra in (("w1", d / "rev1" / "tiny-llama", []), ("w3", rev3, ["--base", str(tmp_path / "w1")])):
        (tmp_path / f"{name}-spec").mkdir()
        spec = write_spec(tmp_path / f"{name}-spec", model, name="delta")
        args = ["-f", str(spec), "--simulate", "--image", test_images["app1"], "--sign", str(made["key"])]
        done = deployctl("bundle", "create", *args, "--wheels", "auto", "-o", str(tmp_path / name), *extra, timeout=900)
        assert done.returncode == 0, done.stderr
        sizes[name] = size_of(tmp_path / name)
    manifest = json.loads((tmp_path / "w3" / "manifest.json").read_text())
    wheels = [f for f in manifest["from_base"] if f["path"].startswith("wheels/")]
    assert not [e for e in manifest["entries"] if e["kind"] == "wheel"] and len(wheels) >= 40
    assert any(f["path"].startswith("wheels/deployctl-") for f in wheels)  # rebuilt, byte for byte the same
    print(
        f"\nfull bundle with wheels: {sizes['w1'] / 1e6:.1f} MB; delta for a 1,000-byte change: {sizes['w3'] / 1e6:.2f} MB"
    )
    assert sizes["w3"] < 10e6 < sizes["w1"]


def test_delta_without_its_base_is_refused_before_anything_is_written(made: dict[str, Path], tmp_path: Path) -> None:
    site = tmp_path / "bare"
    done = install(made, "delta2", site)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "needs its base 'delta'" in lines[0] and "--base" in lines[0]
    assert not site.exists()
    # Given the base bundle instead, the same delta installs.
    done = install(made, "delta2", site, "--base", str(made["full1"]))
    assert done.returncode == 0, done.stderr
    assert tree(site / "models" / "tiny-llama") == tree(made["dir"] / "rev2" / "tiny-llama")


def test_a_flipped_byte_in_the_delta_is_named(made: dict[str, Path], tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert install(made, "full1", site).returncode == 0
    before = tree(site)
    for entry in ("model/tiny-llama/model-00005.safetensors", "images/sha256/"):
        copy = Path(shutil.copytree(made["delta2"], tmp_path / "flipped"))
        victim = (
            copy / entry if not entry.endswith("/") else max((copy / entry).iterdir(), key=lambda p: p.stat().st_size)
        )
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        args = [str(copy), "--pubkey", str(made["pub"]), "--target", str(site), "--simulate"]
        done = deployctl("bundle", "install", *args)
        assert done.returncode == 1  # verification failed
        rel = victim.relative_to(copy).as_posix()
        assert f"{rel} is corrupt" in done.stderr, done.stderr
        assert tree(site) == before
        shutil.rmtree(copy)


@pytest.mark.parametrize(
    "kill_at",
    ["copying model file model-00005", "loading 1 image(s) into Docker", "copying model file model-00009"],
)
def test_killed_delta_install_finishes_on_rerun(
    made: dict[str, Path], test_images: dict[str, str], tmp_path: Path, kill_at: str
) -> None:
    site = tmp_path / "site"
    reference_image = image_layers(test_images["app2"])
    assert install(made, "full1", site).returncode == 0
    docker("rmi", test_images["app2"], check=False)
    cmd = [sys.executable, "-m", "deployctl", "bundle", "install", str(made["delta2"]), "--pubkey", str(made["pub"])]
    proc = subprocess.Popen(
        [*cmd, "--target", str(site), "--simulate"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if kill_at in line:
            time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    rerun = install(made, "delta2", site)
    assert rerun.returncode == 0, rerun.stderr
    assert tree(site / "models" / "tiny-llama") == tree(made["dir"] / "rev2" / "tiny-llama")
    assert image_layers(test_images["app2"]) == reference_image
    assert not list((site / "models").glob(".*"))


def test_the_exported_archive_imports_into_containerd(
    made: dict[str, Path], test_images: dict[str, str], tmp_path: Path
) -> None:
    """`bundle export-images` (the archive install hands to `docker load`) is what `ctr images import` accepts."""
    socket = next(
        (s for s in ("/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock") if _ctr_ok(s)),
        None,
    )
    if socket is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs ctr and a containerd socket")
        pytest.skip("no containerd reachable with ctr")
    archive = tmp_path / "images.tar"
    args = ["bundle", "export-images", str(made["delta2"]), "-o", str(archive), "--pubkey", str(made["pub"])]
    refused = deployctl(*args)
    assert refused.returncode == 2 and "--base" in refused.stderr and not archive.exists()
    done = deployctl(*args, "--base", str(made["full1"]))
    assert done.returncode == 0, done.stderr
    namespace = f"deployctl-test-{os.getpid()}"
    ctr = ["ctr", "--address", socket, "-n", namespace]
    try:
        done = subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        checked = subprocess.run([*ctr, "images", "check"], capture_output=True, text=True).stdout
        lines = [line for line in checked.splitlines() if f"docker.io/{test_images['app2']}" in line]
        assert len(lines) == 1 and re.search(r"complete \((\d+)/\1\)", lines[0]), checked  # every blob present
    finally:
        for name in subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run([*ctr, "images", "rm", "--sync", name], capture_output=True)
        subprocess.run(["ctr", "--address", socket, "namespaces", "rm", namespace], capture_output=True)


def _ctr_ok(socket: str) -> bool:
    if not shutil.which("ctr") or not Path(socket).exists():
        return False
    try:
        done = subprocess.run(["ctr", "--address", socket, "version"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0
