"""Hostile bundles signed with the TRUSTED key: a signature says who made a bundle, not that it is safe.

Every path-bearing field of the manifest (model name, entry paths, image files and names, stack
files, wheel names) and of the bundled spec is tried with `..`, absolute paths, symlinked parents
and over-long names. Each must be refused with exit 2 and one line, before a byte is written under
or beside the target: a canary folder beside the target and the target itself are compared before
and after.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.fake_engine import use_fake_engine
from helpers.snapshot import snapshot as tree_snapshot
from helpers.tinymodel import write_spec, write_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployctl import spec
from deployctl.bundle import create, signing
from deployctl.cli import cli
from deployctl.ops import planning

Manifest = dict[str, Any]
LONG = "a" * 300


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    signing.keygen(d / "k", d / "k.pub")
    return d / "k"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, key: Path) -> Path:
    d = tmp_path_factory.mktemp("good")
    source = spec.load(write_spec(d, write_tiny_model(d / "tiny-llama", files=2, mib=1)))
    plan = planning.make_plan(source, simulate=True)
    return create.create(source, plan, d / "b", images=[], sign_key=key, wheels="none", simulate=True).path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/site is the target (holding a previous install's file); tmp/victim/canary beside it."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "canary.txt").write_text("do not touch")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "keep.txt").write_text("an earlier file")
    use_fake_engine(monkeypatch, tmp_path)
    return tmp_path / "site"


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (bundle aside) with its kind and content hash, links included."""
    return tree_snapshot(root, skip=lambda rel: rel.startswith("bundle"))


def hostile(good: Path, dest: Path, key: Path, change: Callable[[Manifest, Path], None]) -> Path:
    """A copy of the good bundle whose manifest `change` rewrote, signed again with the trusted key."""
    b = Path(shutil.copytree(good, dest))
    manifest = json.loads((b / "manifest.json").read_text())
    change(manifest, b)
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (b / "manifest.json").write_bytes(raw)
    (b / "manifest.sig").write_bytes(signing.sign(raw, key))
    return b


def install(bundle: Path, target: Path, key: Path) -> Any:
    args = ["bundle", "install", str(bundle), "--pubkey", f"{key}.pub", "--target", str(target), "--simulate"]
    return CliRunner().invoke(cli, args)


def refused(result: Any) -> str:
    """The one error line of a refused command (exit 2, no traceback).

    Only progress lines ("verifying every file ...", "ITEM: X MB of Y MB", which cli/output.py writes
    to stderr off a terminal) may come before it, for a bundle refused while it is read.
    """
    import re

    progress = re.compile(r"^.+: [\d.,]+ MB( of [\d.,]+ MB)?$")
    # 2: the bundle is refused as hostile; 1: a file it lists is not there (verification failed, README's table).
    assert result.exit_code == 2 or (result.exit_code == 1 and "is missing from" in result.stderr), (
        result.exit_code,
        result.output,
        result.exception,
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    others = {line for line in lines[:-1] if not progress.match(line)}
    assert others <= {"verifying every file before changing anything"}, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    return str(errors[0])


# -- changes to the manifest -------------------------------------------------------------------------


def _entries(m: Manifest, kind: str) -> list[dict[str, Any]]:
    return [e for e in m["entries"] if e["kind"] == kind]


def set_model_name(value: str) -> Callable[[Manifest, Path], None]:
    def change(m: Manifest, b: Path) -> None:
        m["model_name"] = value

    return change


def move_entry(kind: str, value: str) -> Callable[[Manifest, Path], None]:
    def change(m: Manifest, b: Path) -> None:
        _entries(m, kind)[0]["path"] = value

    return change


def add_entry(kind: str, value: str) -> Callable[[Manifest, Path], None]:
    def change(m: Manifest, b: Path) -> None:
        m["entries"].append({"path": value, "size": 1, "sha256": "0" * 64, "kind": kind})

    return change


ZERO = "sha256:" + "0" * 64
ZERO_FILE = "images/sha256/" + "0" * 64 + ".zst"


def add_image(
    file: str = ZERO_FILE, tag: str = "deployctl/sim:test", digest: str = ZERO
) -> Callable[[Manifest, Path], None]:
    """An image of one config blob stored at `file` (hostile values in any of the three)."""

    def change(m: Manifest, b: Path) -> None:
        m["entries"].append({"path": file, "size": 1, "sha256": "0" * 64, "kind": "image"})
        m["images"].append({"tags": [tag], "config": digest, "layers": []})
        m["blobs"].append({"digest": digest, "size": 1, "carried": True})

    return change


BASE = {"manifest_sha256": "1" * 64, "name": "old", "model_name": "tiny-llama"}


def from_base(
    path: str, base_path: str = "model/tiny-llama/old.bin", base: object = BASE
) -> Callable[[Manifest, Path], None]:
    """A delta's model file taken from its base (hostile values in the paths or the base)."""

    def change(m: Manifest, b: Path) -> None:
        m["base"] = base
        m["from_base"].append({"path": path, "size": 1, "sha256": "0" * 64, "base_path": base_path})

    return change


def rewrite_spec(text_change: Callable[[str], str]) -> Callable[[Manifest, Path], None]:
    """Rewrite the bundled spec and its entry (size, sha256) so that only the content is hostile."""

    def change(m: Manifest, b: Path) -> None:
        path = b / "spec" / "deployctl.yaml"
        data = text_change(path.read_text()).encode()
        path.write_bytes(data)
        entry = _entries(m, "spec")[0]
        entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()

    return change


MANIFEST_CASES = {
    "model_name ../../victim": set_model_name("../../victim"),
    "model_name ../victim": set_model_name("../victim"),
    "model_name absolute": set_model_name("/tmp/victim"),
    "model_name with a slash": set_model_name("tiny-llama/../../victim"),
    "model_name ..": set_model_name(".."),
    "model_name .": set_model_name("."),
    "model_name empty": set_model_name(""),
    "model_name over-long": set_model_name(LONG),
    "model_name hidden": set_model_name(".hidden"),
    "model_name NUL": set_model_name("a\x00b"),
    "model_name number": set_model_name(7),  # type: ignore[arg-type]
    "model entry ..": move_entry("model", "model/tiny-llama/../../../victim/x"),
    "model entry absolute": move_entry("model", "/tmp/victim/x"),
    "model entry without a model folder": move_entry("model", "model/a.bin"),
    "model entry in another model": move_entry("model", "model/other/a.bin"),
    "model entry over-long": move_entry("model", f"model/tiny-llama/{LONG}"),
    "model entry backslash": move_entry("model", "model/tiny-llama/..\\..\\victim"),
    "model entry empty part": move_entry("model", "model/tiny-llama//x"),
    "model entry hidden": move_entry("model", "model/tiny-llama/.git/config"),
    "model entry under stack/": move_entry("model", "stack/x.bin"),
    "stack file ..": move_entry("stack", "stack/../../victim/canary.txt"),
    "stack file absolute": move_entry("stack", "/etc/cron.d/x"),
    "stack file in a sub-folder": move_entry("stack", "stack/a/b.yaml"),
    "stack file over-long": move_entry("stack", f"stack/{LONG}"),
    "spec entry ..": move_entry("spec", "spec/../victim.yaml"),
    "wheel name ..": add_entry("wheel", "wheels/../../victim.whl"),
    "wheel name absolute": add_entry("wheel", "/tmp/victim.whl"),
    "wheel in a sub-folder": add_entry("wheel", "wheels/sub/x.whl"),
    "wheel name over-long": add_entry("wheel", f"wheels/{LONG}.whl"),
    "image blob file ..": add_image("images/../../victim.zst"),
    "image blob file absolute": add_image("/tmp/victim.zst"),
    "image blob file over-long": add_image(f"images/{LONG}.zst"),
    "image blob file outside images/": add_image("model/tiny-llama/x.zst"),
    "image blob file not its digest's": add_image("images/sha256/other.zst"),
    "image blob digest ..": add_image(digest="sha256:../../victim"),
    "image blob digest absolute": add_image(digest="/tmp/victim"),
    "image blob digest over-long": add_image(digest="sha256:" + "0" * 300),
    "image name ../": add_image(tag="../../victim"),
    "image name an option": add_image(tag="--help"),
    "image name absolute": add_image(tag="/tmp/victim:1"),
    "image name over-long": add_image(tag="a" * 300),
    "delta base model_name ..": from_base("model/tiny-llama/x.bin", base={**BASE, "model_name": "../victim"}),
    "delta base model_name absolute": from_base("model/tiny-llama/x.bin", base={**BASE, "model_name": "/victim"}),
    "delta from_base path ..": from_base("model/tiny-llama/../../victim/x"),
    "delta from_base path absolute": from_base("/tmp/victim/x"),
    "delta from_base path without a model folder": from_base("model/x.bin"),
    "delta from_base path over-long": from_base(f"model/tiny-llama/{LONG}"),
    "delta from_base base_path ..": from_base("model/tiny-llama/x.bin", "model/tiny-llama/../../../victim/canary.txt"),
    "delta from_base base_path absolute": from_base("model/tiny-llama/x.bin", "/tmp/victim/canary.txt"),
    "delta from_base base_path in another folder": from_base("model/tiny-llama/x.bin", "model/other/x.bin"),
    "delta from_base without a base": from_base("model/tiny-llama/x.bin", base=None),
    "delta blob not carried without a base": lambda m, b: m["blobs"].append(
        {"digest": ZERO, "size": 1, "carried": False}
    ),
    "revision 0": lambda m, b: m.update(revision=0),
    "revision negative": lambda m, b: m.update(revision=-1),
    "revision a boolean": lambda m, b: m.update(revision=True),
    "revision 10^30": lambda m, b: m.update(revision=10**30),
    "revision a string": lambda m, b: m.update(revision="2"),
    "revision missing": lambda m, b: m.pop("revision"),
    "created_at not a time": lambda m, b: m.update(created_at="yesterday\x1b[2J"),
    "name of 200 characters": lambda m, b: m.update(name="n" * 200),
    "format_version 2": lambda m, b: m.update(format_version=2),
    "entry size true": lambda m, b: _entries(m, "stack")[0].update(size=True),
    "blob carried 1": lambda m, b: m.update(base=BASE, blobs=[{"digest": ZERO, "size": 1, "carried": 1}]),
    "spec stack_dir ..": rewrite_spec(lambda t: t.replace("stack_dir: stack", "stack_dir: ../victim")),
    "spec stack_dir absolute": rewrite_spec(lambda t: t.replace("stack_dir: stack", "stack_dir: /tmp/victim")),
    "spec model.path ..": rewrite_spec(lambda t: t.replace("path: models/tiny-llama", "path: ../victim")),
    "spec api_key_file": rewrite_spec(lambda t: t + "serve:\n  api_key_file: /etc/shadow\n"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_hostile_manifest_signed_by_the_trusted_key_is_refused_before_any_write(
    good: Path, key: Path, site: Path, case: str
) -> None:
    bundle = hostile(good, site.parent / "bundle", key, MANIFEST_CASES[case])
    before = snapshot(site.parent)
    line = refused(install(bundle, site, key))
    assert snapshot(site.parent) == before, line
    assert "manifest.json: " in line or "spec/deployctl.yaml in the bundle:" in line, line  # names where
    print(f"OUTCOME {case}: exit 2, {line}")


# -- symlinks planted inside the target ---------------------------------------------------------------

LINKS = {
    "models/ -> victim": ("models", "../victim"),
    "models/tiny-llama -> victim": ("models/tiny-llama", "../../victim"),
    ".deployctl-install -> victim": (".deployctl-install", "../victim"),
    "deployctl.yaml -> victim file": ("deployctl.yaml", "../victim/canary.txt"),
    "stack -> victim": ("stack", "../victim"),
    "models -> absolute victim": ("models", "VICTIM"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_a_symlinked_parent_inside_the_target_is_refused(good: Path, key: Path, site: Path, case: str) -> None:
    where, to = LINKS[case]
    link = site / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(str(site.parent / "victim") if to == "VICTIM" else to)
    bundle = Path(shutil.copytree(good, site.parent / "bundle"))
    before = snapshot(site.parent)
    line = refused(install(bundle, site, key))
    assert "leads outside" in line
    assert snapshot(site.parent) == before
    print(f"OUTCOME symlink {case}: exit 2, {line}")


def test_a_target_that_is_a_file_is_refused(good: Path, key: Path, site: Path) -> None:
    from helpers.bundle_install import install as install_core

    from deployctl.errors import InputError

    before = snapshot(site.parent)
    with pytest.raises(InputError, match="exists and is not a folder"):
        install_core(good, site / "keep.txt", Path(f"{key}.pub"))
    assert snapshot(site.parent) == before


# -- generated hostile manifests ----------------------------------------------------------------------

pieces = st.sampled_from(["..", ".", "", "/", "\\", "\x00", "victim", "a", "é", " ", "-", ".wh.", "~", LONG])
hostile_text = st.lists(pieces, min_size=1, max_size=6).map("".join) | st.text(max_size=40)
FIELDS = [
    "model_name",
    "model",
    "stack",
    "spec",
    "wheel",
    "image_file",
    "image_tag",
    "image_digest",
    "base_path",
    "base_model_name",
]
HOSTILE_RUNS: list[int] = []


def generated(field: str, value: str) -> Callable[[Manifest, Path], None]:
    if field == "model_name":
        return set_model_name(value)
    if field in ("model", "stack", "spec"):
        top = {"model": "model/tiny-llama/", "stack": "stack/", "spec": "spec/"}[field]
        return move_entry(field, top + value)
    if field == "wheel":
        return add_entry("wheel", "wheels/" + value)
    if field == "image_file":
        return add_image("images/" + value)
    if field == "image_digest":
        return add_image(digest="sha256:" + value)
    if field == "base_path":
        return from_base("model/tiny-llama/x.bin", "model/tiny-llama/" + value)
    if field == "base_model_name":
        return from_base("model/tiny-llama/x.bin", base={**BASE, "model_name": value})
    return add_image(tag=value)


@settings(
    max_examples=150,
    deadline=2000,  # each hostile manifest is refused within 2 s (the brief's bound; typically ~20 ms)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(FIELDS), value=hostile_text)
def test_generated_hostile_manifests_exit_2_one_line_nothing_written(
    good: Path, key: Path, site: Path, field: str, value: str
) -> None:
    bundle = site.parent / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    before = snapshot(site.parent)
    hostile(good, bundle, key, generated(field, value))
    refused(install(bundle, site, key))
    assert snapshot(site.parent) == before
    HOSTILE_RUNS.append(1)


def test_report_how_many_generated_cases_ran(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n{len(HOSTILE_RUNS)} generated hostile manifests refused")


def test_the_good_bundle_is_accepted_by_the_same_checks(good: Path, key: Path, site: Path) -> None:
    """The control: the unchanged bundle passes every check the hostile ones fail (so they can fail)."""
    from deployctl.bundle.archive import open_bundle
    from deployctl.bundle.install import _places

    manifest = open_bundle(good).manifest
    places = _places(copy.deepcopy(manifest), site, "0" * 64)
    assert places.model == (site / "models" / "tiny-llama").resolve()


def test_a_resumed_install_verifies_again_before_writing_more(good: Path, key: Path, site: Path) -> None:
    """Interrupted after the first model file, then the bundle changes: the rerun writes nothing more."""
    from helpers.bundle_install import install as install_core

    from deployctl.bundle.format import BundleError

    bundle = Path(shutil.copytree(good, site.parent / "bundle"))
    copied: list[str] = []

    def interrupt_on_second_file(item: str, done: int, total: int | None) -> None:
        if item.startswith("model/") and total is not None and done == total and item not in copied:
            copied.append(item)
        if len(copied) == 2 and item.startswith("model/") and item != copied[0]:
            raise KeyboardInterrupt

    # The verify pass reports each file too; it is interrupted only in the copy pass, after one file landed.
    with pytest.raises(KeyboardInterrupt):
        install_core(bundle, site, Path(f"{key}.pub"), simulate=True, progress=interrupt_on_second_file)
    journal = next((site / ".deployctl-install").glob("*.json"))
    assert len(json.loads(journal.read_text())["model_files"]) >= 1
    spec_file = bundle / "spec" / "deployctl.yaml"
    spec_file.write_bytes(spec_file.read_bytes().replace(b"stack", b"stacj", 1))
    before = snapshot(site.parent)
    with pytest.raises(BundleError, match=r"spec/deployctl\.yaml is corrupt"):
        install_core(bundle, site, Path(f"{key}.pub"), simulate=True)
    assert snapshot(site.parent) == before


def test_a_good_bundle_installs_with_every_path_under_the_target(good: Path, key: Path, site: Path) -> None:
    from helpers.bundle_install import install as install_core

    done = install_core(good, site, Path(f"{key}.pub"), simulate=True)
    assert Path(done.model_dir) == site / "models" / "tiny-llama"
    assert (site / "models" / "tiny-llama" / "config.json").is_file() and (site / "stack" / "compose.yaml").is_file()
    assert sorted(p.name for p in (site.parent / "victim").iterdir()) == ["canary.txt"]
