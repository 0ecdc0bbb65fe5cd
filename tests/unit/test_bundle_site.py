"""Hostile inputs, second round (issue #24): installs that write nothing outside --target by any route,
bounded work on every input, no silent downgrade, and odd targets refused before anything is written.

Each bundle here is signed by the TRUSTED key. A canary tree beside the target is hashed before and
after every install: nothing outside the target may change, whatever the outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.fake_engine import use_fake_engine
from helpers.fakeimage import use_fake_images
from helpers.snapshot import snapshot
from helpers.tinymodel import write_spec, write_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployctl import fsio, spec
from deployctl.bundle import create, signing
from deployctl.cli import cli
from deployctl.ops import planning

IMAGE = "deployctl-test/site:1"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    signing.keygen(d / "k", d / "k.pub")
    return d / "k"


def make(source: Path, out: Path, key: Path | None, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Path:
    """A bundle of the spec at `source` carrying one fake image (a config and a layer blob)."""
    fake = use_fake_images(monkeypatch)
    fake.add(IMAGE)
    s = spec.load(source)
    plan = planning.make_plan(s, simulate=True)
    made = create.create(s, plan, out, images=[IMAGE], sign_key=key, wheels="none", simulate=True, **kw)
    return made.path if not made.parts else out.parent / f"{out.name}.parts.json"


@pytest.fixture
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("src")
    return write_spec(d, write_tiny_model(d / "tiny-llama", files=2, mib=1))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/site is the target; tmp/victim holds files a planted link could point at."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "canary.txt").write_text("do not touch")
    use_fake_engine(monkeypatch, tmp_path)
    return tmp_path / "site"


def outside(site: Path) -> dict[str, str]:
    """Every path beside the target (links not followed) with its content hash: what must not change."""
    return snapshot(site.parent, skip=lambda rel: rel == site.name or rel.startswith(site.name + "/"))


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner(env=env).invoke(cli, list(args))


def install_args(bundle: Path, site: Path, key: Path, *extra: str) -> list[str]:
    return ["bundle", "install", str(bundle), "--pubkey", f"{key}.pub", "--target", str(site), "--simulate", *extra]


def one_error(result: Any, code: int) -> str:
    """The one `error:` line of a refused command with this exit code (progress lines may come before it)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert "Traceback" not in result.output
    return str(errors[0])


OUTCOMES: list[str] = []


def outcome(case: str, line: str) -> None:
    """Print a case's outcome for docs/security.md (pytest -s shows them)."""
    OUTCOMES.append(f"{case}: {line}")
    print(f"OUTCOME {case}: {line}")


# -- 1. every write under the target goes through fsio's one writer -------------------------------------


def test_links_planted_at_every_temporary_name_install_uses_change_nothing_outside(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    # Run 1, on a scratch target: every file the install writes, read from the one function's callers.
    written: list[Path] = []
    real_writer = fsio.atomic_writer

    def recording(path: Path, **kw: Any) -> Any:
        written.append(Path(path))
        return real_writer(path, **kw)

    monkeypatch.setattr(fsio, "atomic_writer", recording)
    for module in ("deployctl.bundle.blobs", "deployctl.bundle.install"):
        monkeypatch.setattr(f"{module}.atomic_writer", recording, raising=False)
    scratch = tmp_path / "scratch"
    assert run(*install_args(bundle, scratch, key)).exit_code == 0
    rels = sorted({p.relative_to(scratch.resolve()) for p in written})
    # write_atomic calls atomic_writer inside fsio: the journal, the spec and the installed record are among them.
    assert {"deployctl.yaml", ".deployctl-install/installed.json"} <= {r.as_posix() for r in rels}
    assert any(r.parts[:2] == (".deployctl-install", "images") for r in rels), rels  # the blobs
    assert any(r.parts[0] == "models" for r in rels), rels  # the model files, in their staging folder
    # Run 2, on the real target: a link at the first temporary name each write tries, and at the
    # fixed names the issue found followed (.deployctl.yaml.tmp, the journal's .tmp, a blob's .part).
    monkeypatch.setattr(fsio, "temporary_name", lambda name, attempt: f".{name}.tmp-planted{attempt}")
    sha = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    legacy = [Path(".deployctl.yaml.tmp"), Path(".deployctl-install", f"{sha[:24]}.tmp")]
    legacy += [Path(".deployctl-install/images", f".{p.name}.part") for p in rels if p.parts[1:2] == ("images",)]
    planted = [rel.parent / f".{rel.name}.tmp-planted0" for rel in rels] + legacy
    for i, rel in enumerate(planted):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).symlink_to(tmp_path / "victim" / f"v{i}.txt")  # a link to a file that does not exist yet
    before = outside(site)
    result = run(*install_args(bundle, site, key))
    assert result.exit_code == 0, result.output
    assert outside(site) == before  # no victim file created or changed
    assert "models/tiny-llama" in (site / "deployctl.yaml").read_text()
    assert tree(site / "models") == tree(scratch / "models")
    kept = [rel for rel in planted if (site / rel).is_symlink()]
    outcome(
        f"{len(planted)} links planted at temporary names ({len(rels)} files written)",
        f"exit 0, nothing outside the target changed; {len(kept)} links skipped in place, "
        f"{len(planted) - len(kept)} in folders the install empties (staging)",
    )


def test_a_planted_link_to_a_folder_outside_is_refused_when_the_install_makes_its_folders(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    sha = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    (site / "models").mkdir(parents=True)
    (site / "models" / f".tiny-llama.partial-{sha[:12]}").symlink_to(tmp_path / "victim")
    before = outside(site)
    line = one_error(run(*install_args(bundle, site, key)), 2)
    assert "leads outside" in line and outside(site) == before
    outcome("staging folder a link to a folder outside", f"exit 2, {line}")


# -- 2. bounded decompression ---------------------------------------------------------------------------

BOMB_CHILD = """
import json, sys
from deployctl.docker import engine

class Engine:
    def info(self):
        return {"DockerRootDir": sys.argv[1]}

engine._client = lambda: Engine()
from deployctl.cli import cli
try:
    cli(args=sys.argv[2:], prog_name="deployctl")
    code = 0
except SystemExit as exc:
    code = exc.code
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
# VmHWM: this process image's peak RSS (ru_maxrss would carry the forking parent's across exec).
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
peak_kib = int(status["VmHWM"].split()[0])
print(json.dumps({"wchar": int(io["wchar"]), "peak_kib": peak_kib}), file=sys.stderr)
sys.exit(code)
"""


def test_a_decompression_bomb_is_refused_with_little_written_and_little_memory(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zstandard

    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    # 1 GiB of zeros in ~33 KB of zstd, declared as a 1 KiB layer.
    z = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(4 * 1024 * 1024)
    bomb = b"".join(z.compress(zeros) for _ in range(256)) + z.flush()
    assert len(bomb) < 100_000
    digest = "sha256:" + "ab" * 32
    path = f"images/sha256/{digest[7:]}.zst"
    (bundle / path).write_bytes(bomb)
    entry = {"path": path, "size": len(bomb), "sha256": hashlib.sha256(bomb).hexdigest(), "kind": "image"}
    manifest["entries"].insert(0, entry)  # read first: the model's files would be copied before it
    manifest["blobs"].append({"digest": digest, "size": 1024, "carried": True})
    manifest["images"].append({"tags": ["deployctl-test/bomb:1"], "config": digest, "layers": []})
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_bytes(signing.sign(raw, key))
    before = outside(site)
    args = install_args(bundle, site, key)
    done = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(tmp_path), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "decompresses to more than the 1,024 bytes the manifest declares" in errors[0]
    measured = json.loads(done.stderr.strip().splitlines()[-1])
    written = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) if site.exists() else 0
    assert measured["wchar"] < 2 * 1024 * 1024, measured  # every write(2) of the process, the model's 2 MiB aside...
    assert measured["peak_kib"] < 200 * 1024, measured
    assert not list(site.rglob("*.tmp-*")) and outside(site) == before
    outcome(
        "1 KiB-declared blob of 1 GiB zeros (33 KB zstd)",
        f"exit 2, {errors[0]}; {measured['wchar'] / 1e6:.2f} MB written by the process, "
        f"{written / 1e6:.2f} MB left at the target, peak RSS {measured['peak_kib'] / 1024:.0f} MiB",
    )


# -- 3. anti-rollback -------------------------------------------------------------------------------------


def test_an_older_revision_is_refused_and_installs_with_allow_downgrade(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r1 = make(src, tmp_path / "r1", key, monkeypatch, revision=1)
    model = src.parent / "tiny-llama" / "model-00001.safetensors"
    data = bytearray(model.read_bytes())
    data[-10:] = os.urandom(10)  # revision 2 has other weights
    model.write_bytes(bytes(data))
    r2 = make(src, tmp_path / "r2", key, monkeypatch, revision=2)
    assert run(*install_args(r2, site, key)).exit_code == 0
    assert run(*install_args(r2, site, key)).exit_code == 0  # the same bundle again: no downgrade
    before, beside = tree(site), outside(site)
    line = one_error(run(*install_args(r1, site, key)), 2)
    assert "refusing a downgrade: this bundle is revision 1" in line and "installed revision 2" in line, line
    assert "--allow-downgrade" in line
    assert tree(site) == before and outside(site) == beside  # nothing written, not even a journal
    outcome("revision 1 over revision 2", f"exit 2, {line}")
    done = run(*install_args(r1, site, key, "--allow-downgrade"))
    assert done.exit_code == 0, done.output
    assert "installed revision 1" in done.stdout and "revision 2 was newer; it was replaced" in done.stdout
    assert (site / "models" / "tiny-llama" / "model-00001.safetensors").read_bytes() == (
        r1 / "model" / "tiny-llama" / "model-00001.safetensors"
    ).read_bytes()
    record = json.loads((site / ".deployctl-install" / "installed.json").read_text())
    assert record["revision"] == 1
    outcome("revision 1 over revision 2 with --allow-downgrade", "exit 0, says revision 2 was newer and was replaced")


def test_a_delta_made_with_an_older_revision_than_its_base_is_refused_at_create(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployctl.errors import InputError

    r5 = make(src, tmp_path / "r5", key, monkeypatch, revision=5)
    with pytest.raises(InputError, match="--revision 5 is not above the base's revision 5"):
        make(src, tmp_path / "d", key, monkeypatch, revision=5, base=r5)
    assert not (tmp_path / "d").exists()


# -- 4. parts index, keys and diff: regular files only, read with a bound ---------------------------------


def _split(src: Path, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make(src, tmp_path / "s" / "llm.tar", key, monkeypatch, split=1024 * 1024)


def _in_thread(call: Callable[[], Any]) -> Any:
    """Run `call` in a thread and give its result; a call that blocks (a FIFO read) fails the test, never hangs it."""
    box: list[Any] = []
    done = threading.Event()

    def target() -> None:
        box.append(call())
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(60), "the command blocked"
    return box[0]


@pytest.mark.parametrize("name", ["/dev/zero", "FIFO", "../x", "link"])
def test_a_parts_index_naming_a_device_a_fifo_or_another_folder_exits_2(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    index = _split(src, tmp_path, key, monkeypatch)
    data = json.loads(index.read_text())
    first = index.parent / data["parts"][0]["name"]
    if name == "FIFO":
        first.unlink()
        os.mkfifo(first)
    elif name == "link":
        first.rename(tmp_path / "elsewhere")
        first.symlink_to(tmp_path / "elsewhere")
    else:
        (tmp_path / "x").write_bytes(first.read_bytes())
        data["parts"][0]["name"] = name
        index.write_text(json.dumps(data))
    for args in (["--pubkey", f"{key}.pub"], ["--insecure-skip-signature"]):
        result = _in_thread(lambda args=args: run("bundle", "verify", str(index), *args))
        line = one_error(result, 2)
        assert "is not a file name in the index's own folder" in line or "is not a regular file" in line, line
    outcome(f"parts index naming {name}", f"exit 2, {line}")


def test_a_parts_index_that_is_not_signed_or_of_another_bundle_fails_verification(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = _split(src, tmp_path, key, monkeypatch)
    data = json.loads(index.read_text())
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    index.write_text(json.dumps(unsigned))
    line = one_error(run("bundle", "verify", str(index), "--pubkey", f"{key}.pub"), 1)
    assert "the parts index is not signed" in line
    outcome("parts index without its signature", f"exit 1, {line}")
    data["parts"].append(dict(data["parts"][-1]))  # a part twice: the list no longer matches its signature
    index.write_text(json.dumps(data))
    line = one_error(run("bundle", "verify", str(index), "--pubkey", f"{key}.pub"), 1)
    assert "the parts index was changed after it was signed" in line, line
    outcome("parts index changed after signing", f"exit 1, {line}")


@pytest.mark.parametrize("kind", ["FIFO", "/dev/zero", "folder"])
def test_pubkey_and_diff_refuse_what_is_not_a_regular_file(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    bundle = make(src, tmp_path / "b", key, monkeypatch)
    odd = Path("/dev/zero") if kind == "/dev/zero" else tmp_path / "odd"
    if kind == "FIFO":
        os.mkfifo(odd)
    elif kind == "folder":
        odd.mkdir()
    result = _in_thread(lambda: run("bundle", "verify", str(bundle), "--pubkey", str(odd)))
    line = one_error(result, 2)
    outcome(f"--pubkey {kind}", f"exit 2, {line}")
    if kind != "folder":
        result = _in_thread(lambda: run("bundle", "diff", str(odd), str(bundle)))
        line = one_error(result, 2)
        assert "not a folder or a regular file" in line or "not a regular file" in line, line
        outcome(f"bundle diff of {kind}", f"exit 2, {line}")


# -- 7. signature algorithm, bytes after the tar, exit codes of verify ----------------------------------------


def test_a_signature_naming_another_algorithm_is_refused(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "b", key, monkeypatch)
    sig = json.loads((bundle / "manifest.sig").read_text())
    for algorithm in ("none", "ed25519ph", "ED25519"):
        (bundle / "manifest.sig").write_text(json.dumps({**sig, "algorithm": algorithm}))
        line = one_error(run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub"), 1)
        assert f"names the algorithm '{algorithm}'" in line, line
        outcome(f"manifest.sig with algorithm {algorithm!r} (valid ed25519 signature)", f"exit 1, {line}")


def test_bytes_after_the_end_of_the_tar_are_refused(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "b.tar", key, monkeypatch, as_tar=True)
    assert run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub").exit_code == 0
    with bundle.open("ab") as f:
        f.write(os.urandom(1024 * 1024))
    line = one_error(run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub"), 1)
    assert "bytes after the end of its archive that are not padding" in line, line
    outcome("1 MiB of garbage after the tar's end", f"exit 1, {line}")


def test_verify_of_a_corrupt_or_wrongly_signed_bundle_exits_1(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "b", key, monkeypatch)
    signing.keygen(tmp_path / "other", tmp_path / "other.pub")
    line = one_error(run("bundle", "verify", str(bundle), "--pubkey", str(tmp_path / "other.pub")), 1)
    assert "wrong key" in line
    shard = bundle / "model" / "tiny-llama" / "model-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    line = one_error(run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub"), 1)
    assert "is corrupt" in line
    done = run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub", "--json")
    assert done.exit_code == 1 and json.loads(done.stdout)["exit_code"] == 1


def test_a_manifest_name_with_escape_codes_is_shown_escaped(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "b", key, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["name"] = "x\x1b]0;pwned\x07\x1b[2J\rVERIFIED \u202egpj.exe"
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_bytes(signing.sign(raw, key))
    for args in (["--pubkey", f"{key}.pub"], ["--insecure-skip-signature"]):
        done = run("bundle", "verify", str(bundle), *args)
        assert done.exit_code == 0, done.output
        assert "\x1b" not in done.output and "\r" not in done.output and "\u202e" not in done.output
        assert "x\\x1b]0;pwned\\x07" in done.stdout and "\\u202e" in done.stdout
    outcome("manifest name with OSC/CSI escapes, CR and U+202E", "exit 0, printed as \\x1b...\\u202e")


# -- 8. odd targets: one line, before anything is written ---------------------------------------------------


def _odd_target(site: Path, kind: str) -> None:
    site.mkdir()
    if kind == "deployctl.yaml a folder":
        (site / "deployctl.yaml").mkdir()
    elif kind == "models a file":
        (site / "models").write_text("x")
    elif kind == "journal folder a file":
        (site / ".deployctl-install").write_text("x")


@pytest.mark.parametrize("kind", ["deployctl.yaml a folder", "models a file", "journal folder a file"])
def test_an_odd_target_is_one_line_exit_3_before_anything_is_written(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    _odd_target(site, kind)
    before, beside = tree(site), outside(site)
    line = one_error(run(*install_args(bundle, site, key)), 3)
    assert "move it aside" in line
    assert tree(site) == before and outside(site) == beside
    outcome(f"target with {kind}", f"exit 3, {line}")


def test_an_immutable_target_is_one_line_exit_3(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    site.mkdir()
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(site)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not supported here")
    else:
        site.chmod(0o555)  # what an immutable folder is to a user who is not root
    try:
        before = tree(site)
        line = one_error(run(*install_args(bundle, site, key)), 3)
        assert "cannot write in" in line and tree(site) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(site)], check=True)
        site.chmod(0o755)
    outcome("immutable target (chattr +i)", f"exit 3, {line}")


def test_a_signed_model_path_of_4900_characters_is_refused_before_anything_is_written(
    key: Path, site: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(e for e in manifest["entries"] if e["kind"] == "model")
    deep = "/".join(["d" * 120] * 40) + "/w.bin"  # every part a safe name, 4,886 characters in all
    old = bundle / entry["path"]
    entry["path"] = f"model/tiny-llama/{deep}"
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_bytes(signing.sign(raw, key))
    old.unlink()
    before = outside(site)
    line = one_error(run(*install_args(bundle, site, key)), 2)
    assert "at most 1,024 bytes" in line and not site.exists() and outside(site) == before
    outcome("signed model path of 4,886 characters", f"exit 2, {line}")


def test_a_target_too_deep_for_the_bundles_paths_is_refused(
    key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make(src, tmp_path / "bundle", key, monkeypatch)
    use_fake_engine(monkeypatch, tmp_path)
    deep = tmp_path / "/".join(["t" * 200] * 19) / ("u" * 120)  # under PATH_MAX itself, over it with the bundle's files
    assert len(str(deep)) < 4096
    line = one_error(run(*install_args(bundle, deep, key)), 3)
    assert "too deep for the bundle's paths" in line and not (tmp_path / ("t" * 200)).exists()
    outcome("a 4,000-character --target", f"exit 3, {line}")


def test_the_split_bundle_says_one_part(key: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployctl.cli.bundle import _where

    assert _where(Path("x.tar"), ["x.tar.part000"]) == "1 part x.tar.part000"
    assert _where(Path("x.tar"), ["a", "b", "c"]) == "3 parts a..c"


def test_report_the_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n{len(OUTCOMES)} hostile install cases with outcomes")


# -- #20: a delta takes its layers from the site's engine by digest, reading no image ----------------------


def _delta_manifest(config_carried: bool, layers: list[tuple[str, bool]]) -> Any:
    """A delta's manifest of one image: its config (carried or not) and layers (digest, carried)."""
    from deployctl.bundle.format import Base, Blob, Entry, ImageEntry, Manifest, blob_file

    config = "sha256:" + "c" * 64
    blobs = [Blob(digest=config, size=10, carried=config_carried)]
    blobs += [Blob(digest=d, size=10, carried=c) for d, c in layers]
    entries = [Entry(path=blob_file(b.digest), size=5, sha256="0" * 64, kind="image") for b in blobs if b.carried]
    return Manifest(
        format="deployctl-bundle",
        format_version=3,
        revision=2,
        created_at="2026-12-07T00:00:00Z",
        deployctl_version="x",
        name="tiny",
        plan={},
        model_name="tiny-llama",
        images=[ImageEntry(tags=["x/app:2"], config=config, layers=[d for d, _ in layers])],
        blobs=blobs,
        entries=entries,
        base=Base(manifest_sha256="1" * 64, name="tiny", model_name="tiny-llama"),
    )


def _site(monkeypatch: pytest.MonkeyPatch, images: dict[str, list[str]], containerd: bool = False) -> list[str]:
    """Point the bundle code at a site engine holding `images` (id -> layers); give the list of what it was asked."""
    from deployctl.bundle import images as bundle_images

    asked: list[str] = []

    def site_images() -> Any:
        asked.append("list")
        chains = {bundle_images.chain_id(ls[: i + 1]) for ls in images.values() for i in range(len(ls))}
        return bundle_images.SiteImages(set(images), chains, containerd)

    monkeypatch.setattr(bundle_images, "site_images", site_images)
    monkeypatch.setattr(bundle_images, "save", lambda name: asked.append(f"save {name}") or iter(()))
    return asked


L1, L2, L3 = ("sha256:" + c * 64 for c in "123")


def test_a_deltas_layers_are_found_in_the_site_engines_chains_without_reading_an_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deployctl.bundle import delta
    from deployctl.bundle.format import BundleError

    manifest = _delta_manifest(True, [(L1, False), (L2, False), (L3, True)])
    asked = _site(monkeypatch, {"sha256:" + "a" * 64: [L1, L2, "sha256:" + "9" * 64]})
    found = delta.find(manifest, target=tmp_path, base_done=True, need_blobs=True, files_done=set(), base_bundle=None)
    assert found.present == {L1, L2} and asked == ["list"]  # one listing, no `docker save`
    # The same layers in another order are another chain: the engine does not hold [L2, L1].
    _site(monkeypatch, {"sha256:" + "a" * 64: [L2, L1]})
    with pytest.raises(BundleError, match=r"lacks pieces .*image layer sha256:1111.*pass --base"):
        delta.find(manifest, target=tmp_path, base_done=True, need_blobs=True, files_done=set(), base_bundle=None)
    _site(monkeypatch, {"sha256:" + "a" * 64: [L1, L2]}, containerd=True)
    with pytest.raises(BundleError, match="containerd"):
        delta.find(manifest, target=tmp_path, base_done=True, need_blobs=True, files_done=set(), base_bundle=None)


def test_an_image_the_delta_did_not_change_is_only_named_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deployctl.bundle import delta, install
    from deployctl.bundle import images as bundle_images

    manifest = _delta_manifest(False, [(L1, False)])
    _site(monkeypatch, {"sha256:" + "c" * 64: [L1]})
    found = delta.find(manifest, target=tmp_path, base_done=True, need_blobs=True, files_done=set(), base_bundle=None)
    assert found.unchanged == {"sha256:" + "c" * 64: ["x/app:2"]}
    tagged: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(bundle_images, "tag", lambda image_id, tags: tagged.append((image_id, tags)))
    monkeypatch.setattr(bundle_images, "load", lambda archive: pytest.fail("nothing to load"))
    install._load_images(manifest, tmp_path / "none", found)
    assert tagged == [("sha256:" + "c" * 64, ["x/app:2"])]


def test_the_archive_for_the_site_leaves_out_the_layers_the_engine_holds() -> None:
    import io
    import tarfile

    from deployctl.bundle.format import ImageEntry
    from deployctl.bundle.images import archive_stream

    image = ImageEntry(tags=["x/app:2"], config="sha256:" + "c" * 64, layers=[L1, L2])
    sizes = {image.config: 3, L1: 4, L2: 5}
    data = {image.config: b"cfg", L2: b"layer"}
    archive = b"".join(archive_stream([image], sizes, lambda d: io.BytesIO(data[d]), present=frozenset({L1})))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert f"blobs/sha256/{L1[7:]}" not in names and f"blobs/sha256/{L2[7:]}" in names
    assert manifest[0]["Layers"] == [f"blobs/sha256/{L1[7:]}", f"blobs/sha256/{L2[7:]}"]  # docker load's order


# -- generated parts indexes and signatures: every one refused in one line, nothing read past a bound ------

PART_NAMES = st.sampled_from(["/dev/zero", "../x", "", ".", "..", "a/b", "x\x00y", "FIFO", "llm.tar.part000", "é"])
INDEX_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=20), PART_NAMES),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
INDEX_RUNS: list[int] = []


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory, key: Path) -> Path:
    d = tmp_path_factory.mktemp("split")
    src = write_spec(d, write_tiny_model(d / "tiny-llama", files=2, mib=1))
    with pytest.MonkeyPatch.context() as mp:
        make(src, d / "s" / "llm.tar", key, mp, split=1024 * 1024)
    os.mkfifo(d / "s" / "FIFO")
    return d / "s"


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    part=st.fixed_dictionaries({"name": PART_NAMES, "size": INDEX_VALUES, "sha256": INDEX_VALUES}),
    extra=INDEX_VALUES,
    where=st.sampled_from(["first part", "whole index", "signature"]),
)
def test_generated_parts_indexes_are_refused_in_one_line(
    split_dir: Path, key: Path, part: dict[str, Any], extra: Any, where: str
) -> None:
    index = split_dir / "llm.tar.parts.json"
    good = index.read_bytes()
    data = json.loads(good)
    if where == "first part":
        data["parts"][0] = part
    elif where == "whole index":
        data = extra
    else:
        data["signature"] = extra
    try:
        index.write_text(json.dumps(data))
        result = _in_thread(lambda: run("bundle", "verify", str(index), "--pubkey", f"{key}.pub"))
    finally:
        index.write_bytes(good)
    code = 1 if result.exit_code == 1 else 2
    one_error(result, code)
    INDEX_RUNS.append(1)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(sig=INDEX_VALUES)
def test_generated_signatures_are_refused_in_one_line(
    key: Path, src: Path, tmp_path_factory: pytest.TempPathFactory, sig: Any
) -> None:
    bundle = tmp_path_factory.getbasetemp() / "sig-bundle"
    if not bundle.exists():
        with pytest.MonkeyPatch.context() as mp:
            make(src, bundle, key, mp)
    (bundle / "manifest.sig").write_text(json.dumps(sig))
    one_error(run("bundle", "verify", str(bundle), "--pubkey", f"{key}.pub"), 1)


def test_report_how_many_generated_indexes_ran(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n{len(INDEX_RUNS)} generated parts indexes refused")
