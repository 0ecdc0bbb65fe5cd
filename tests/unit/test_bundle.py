"""Bundles without Docker: format, signatures, checksums, parts, and hostile archives."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from helpers.tinymodel import write_spec, write_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployctl import spec
from deployctl.bundle import create, signing
from deployctl.bundle.format import BundleError, parse_manifest, parse_size, safe_path
from deployctl.bundle.install import verify
from deployctl.ops import planning


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    signing.keygen(d / "k", d / "k.pub")
    signing.keygen(d / "other", d / "other.pub")
    return d / "k", d / "k.pub"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> spec.DeploymentSpec:
    d = tmp_path_factory.mktemp("src")
    model = write_tiny_model(d / "tiny-llama")
    return spec.load(write_spec(d, model))


def make(source: spec.DeploymentSpec, out: Path, key: Path | None, **kw: object) -> Path:
    plan = planning.make_plan(source, simulate=True)
    return create.create(source, plan, out, images=[], sign_key=key, wheels="none", simulate=True, **kw).path  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory, source: spec.DeploymentSpec, keys: tuple[Path, Path]
) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bundles")
    make(source, d / "dir.bundle", keys[0])
    make(source, d / "one.tar", keys[0], as_tar=True)
    make(source, d / "split.tar", keys[0], split=1024 * 1024)
    return {"dir": d / "dir.bundle", "tar": d / "one.tar", "split": d / "split.tar.parts.json"}


def copy_of(bundles: dict[str, Path], kind: str, tmp: Path) -> Path:
    src = bundles[kind]
    if kind == "dir":
        return Path(shutil.copytree(src, tmp / src.name))
    for f in src.parent.glob(src.name.split(".parts.json")[0] + "*"):
        shutil.copy2(f, tmp / f.name)
    return tmp / src.name


@pytest.mark.parametrize("kind", ["dir", "tar", "split"])
def test_a_good_bundle_verifies(bundles: dict[str, Path], keys: tuple[Path, Path], kind: str) -> None:
    result = verify(bundles[kind], keys[1])
    assert result.trust.startswith("signed by sha256:") and result.entries >= 8


def test_split_parts_are_at_most_the_size(bundles: dict[str, Path]) -> None:
    index = json.loads(bundles["split"].read_text())
    assert len(index["parts"]) >= 5
    assert all(p["size"] <= 1024 * 1024 for p in index["parts"])


def test_bundle_holds_manifest_model_stack_spec(bundles: dict[str, Path]) -> None:
    root = bundles["dir"]
    manifest = parse_manifest((root / "manifest.json").read_bytes())
    kinds = {e.kind for e in manifest.entries}
    assert kinds == {"model", "stack", "spec"}
    assert (root / "stack" / "env.template").exists() and not (root / "stack" / ".env").exists()
    assert manifest.plan["model"]["name"] == "tiny-llama" and manifest.deployctl_version
    assert "models/tiny-llama" in (root / "spec" / "deployctl.yaml").read_text()


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "entry",
    [
        "model/tiny-llama/model-00001.safetensors",
        "model/tiny-llama/config.json",
        "stack/compose.yaml",
        "spec/deployctl.yaml",
    ],
)
def test_one_flipped_byte_in_any_entry_is_named(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, entry: str
) -> None:
    b = copy_of(bundles, "dir", tmp_path)
    _flip(b / entry)
    with pytest.raises(BundleError, match=f"{entry} is corrupt"):
        verify(b, keys[1])


@pytest.mark.parametrize("kind", ["tar", "split"])
def test_a_flipped_byte_in_an_archive_names_the_file(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    b = copy_of(bundles, kind, tmp_path)
    if kind == "tar":
        with tarfile.open(bundles["tar"]) as t:
            member = t.getmember("model/tiny-llama/model-00001.safetensors")
        _flip(b, member.offset_data + 1000)
        with pytest.raises(BundleError, match=r"model-00001\.safetensors is corrupt"):
            verify(b, keys[1])
    else:
        _flip(tmp_path / json.loads(b.read_text())["parts"][2]["name"], 100)
        with pytest.raises(BundleError, match=r"corrupt"):
            verify(b, keys[1])


def test_truncated_and_missing_parts_have_their_own_messages(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    b = copy_of(bundles, "split", tmp_path)
    parts = json.loads(b.read_text())["parts"]
    third = tmp_path / parts[2]["name"]
    third.write_bytes(third.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"part 3 of \d+ \(.*part002\) is truncated"):
        verify(b, keys[1])
    third.unlink()
    with pytest.raises(BundleError, match=r"part 3 of \d+ is missing: .*part002"):
        verify(b, keys[1])


def test_tampered_manifest_wrong_key_and_unsigned(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    b = copy_of(bundles, "dir", tmp_path)
    other = keys[1].with_name("other.pub")
    with pytest.raises(BundleError, match="wrong key: the bundle was signed by sha256:"):
        verify(b, other)
    m = json.loads((b / "manifest.json").read_text())
    m["name"] = "evil"
    (b / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    with pytest.raises(BundleError, match="changed after it was signed"):
        verify(b, keys[1])
    (b / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="not signed"):
        verify(b, keys[1])
    assert "NOT checked" in verify(b, None, insecure=True).trust


def test_extra_files_and_links_in_a_folder_bundle_are_refused(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    b = copy_of(bundles, "dir", tmp_path)
    (b / "model" / "tiny-llama" / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"extra\.bin is in the bundle but not in its manifest"):
        verify(b, keys[1])
    (b / "model" / "tiny-llama" / "extra.bin").unlink()
    (b / "model" / "tiny-llama" / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="symbolic link"):
        verify(b, keys[1])


def _evil_tar(tmp: Path, bundles: dict[str, Path], member: tarfile.TarInfo, data: bytes = b"") -> Path:
    """The good tar with one hostile member appended after the manifest and signature."""
    out = tmp / "evil.tar"
    with tarfile.open(bundles["tar"]) as good, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as bad:
        members = good.getmembers()
        for m in members[:2]:
            bad.addfile(m, good.extractfile(m))
        bad.addfile(member, io.BytesIO(data) if member.isreg() else None)
        for m in members[2:]:
            bad.addfile(m, good.extractfile(m))
    return out


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.size, t.linkname = kind, size, link
    return t


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_info("/etc/cron.d/evil", size=1), "unsafe path"),
        (_info("model/../../etc/passwd", size=1), "unsafe path"),
        (_info("model/tiny-llama/link", tarfile.SYMTYPE, link="/etc/shadow"), "is a link"),
        (_info("model/tiny-llama/hard", tarfile.LNKTYPE, link="spec/deployctl.yaml"), "is a link"),
        (_info("model/tiny-llama/dev", tarfile.CHRTYPE), "not a plain file"),
        (_info("model/tiny-llama/fifo", tarfile.FIFOTYPE), "not a plain file"),
        (_info("model/tiny-llama/config.json", size=1), "config.json: 1 bytes in the archive"),
        (_info("model/tiny-llama/notlisted.bin", size=1), "not in its manifest"),
        (_info("etc/passwd", size=1), "outside images, model"),
    ],
)
def test_hostile_archive_members_are_refused(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    evil = _evil_tar(tmp_path, bundles, member, b"x" * member.size)
    with pytest.raises(BundleError, match=message):
        verify(evil, keys[1])


def test_duplicate_member_is_refused(bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path) -> None:
    with tarfile.open(bundles["tar"]) as good:
        m = good.getmember("spec/deployctl.yaml")
        data = good.extractfile(m).read()  # type: ignore[union-attr]
    evil = _evil_tar(tmp_path, bundles, m, data)
    with pytest.raises(BundleError, match="appears twice"):
        verify(evil, keys[1])


def test_parse_size() -> None:
    assert (
        parse_size("4G") == 4 * 2**30 and parse_size("700M") == 700 * 2**20 and parse_size("1.5GiB") == int(1.5 * 2**30)
    )
    with pytest.raises(Exception, match="not a size"):
        parse_size("lots")


# -- property tests --------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_safe_path_only_admits_paths_inside_the_bundle(path: str) -> None:
    try:
        ok = safe_path(path)
    except BundleError:
        return
    root = Path("/bundle")
    resolved = (root / ok).resolve()
    assert resolved.is_relative_to(root.resolve()) and resolved != root.resolve()
    assert ok.split("/")[0] in ("images", "model", "stack", "spec", "wheels")


@given(st.lists(st.sampled_from(["..", ".", "", "model", "a", "/", "\\", "x\x00y", "images"]), max_size=6))
def test_traversal_pieces_never_escape(parts: list[str]) -> None:
    path = "/".join(parts)
    try:
        safe_path(path)
    except BundleError:
        return
    assert ".." not in path.split("/") and not path.startswith("/")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "format",
                "format_version",
                "entries",
                "images",
                "plan",
                "name",
                "created_at",
                "deployctl_version",
                "model_name",
                "junk",
            ]
        ),
        json_values,
        max_size=10,
    )
)
def test_manifest_parser_gives_bundle_errors_only(data: dict[str, object]) -> None:
    data = {"format": "deployctl-bundle", **data}
    with contextlib.suppress(BundleError):
        parse_manifest(json.dumps(data).encode())


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "path": st.text(max_size=30),
                "size": st.integers(-5, 10**12),
                "sha256": st.text(alphabet="0123456789abcdef", min_size=63, max_size=65),
                "kind": st.sampled_from(["model", "image", "other"]),
            }
        ),
        max_size=5,
    )
)
def test_manifest_entries_are_validated(entries: list[dict[str, object]]) -> None:
    data = {
        "format": "deployctl-bundle",
        "format_version": 1,
        "created_at": "",
        "deployctl_version": "0",
        "name": "x",
        "plan": {},
        "model_name": None,
        "images": [],
        "entries": entries,
    }
    try:
        m = parse_manifest(json.dumps(data).encode())
    except BundleError:
        return
    for e in m.entries:
        assert not e.path.startswith("/") and ".." not in e.path.split("/") and e.size >= 0 and len(e.sha256) == 64


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10**7), flip=st.integers(min_value=0, max_value=10**7))
def test_archive_reader_survives_any_damage(
    bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, cut: int, flip: int
) -> None:
    raw = bytearray(bundles["tar"].read_bytes())
    raw = raw[: cut % (len(raw) + 1)]
    if raw:
        raw[flip % len(raw)] ^= 0xFF
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(raw))
    try:
        verify(damaged, keys[1])
    except BundleError:
        return
    pytest.fail("a damaged bundle verified")


# -- delta bundles (model files; images are in tests/e2e/test_bundle_delta.py) ---------------------------


@pytest.fixture
def revisions(tmp_path: Path, keys: tuple[Path, Path]) -> dict[str, Path]:
    """Full bundles of two model revisions (one shard of four changed) and the delta of the second."""
    from helpers.tinymodel import write_spec, write_tiny_model

    rev1 = write_tiny_model(tmp_path / "rev1" / "tiny-llama", files=4, mib=1)
    rev2 = Path(shutil.copytree(rev1, tmp_path / "rev2" / "tiny-llama"))
    shard = rev2 / "model-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\x01" * 8)
    out = {"rev2": rev2}
    for name, model, base in (("full1", rev1, None), ("full2", rev2, None), ("delta2", rev2, tmp_path / "full1")):
        s = spec.load(write_spec(model.parent, model))
        plan = planning.make_plan(s, simulate=True)
        out[name] = create.create(
            s, plan, tmp_path / name, images=[], sign_key=keys[0], wheels="none", simulate=True, base=base
        ).path
    return out


def test_a_delta_carries_only_the_changed_shard(revisions: dict[str, Path]) -> None:
    manifest = parse_manifest((revisions["delta2"] / "manifest.json").read_bytes())
    assert [e.path for e in manifest.entries if e.kind == "model"] == ["model/tiny-llama/model-00002.safetensors"]
    assert len(manifest.from_base) == 5 and manifest.base is not None
    assert (
        manifest.base.manifest_sha256 == hashlib.sha256((revisions["full1"] / "manifest.json").read_bytes()).hexdigest()
    )


def test_delta_install_on_the_base_site_equals_the_full_install(
    revisions: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.bundle_install import install
    from helpers.fake_engine import use_fake_engine

    use_fake_engine(monkeypatch, tmp_path)
    site, full = tmp_path / "site", tmp_path / "full"
    install(revisions["full1"], site, keys[1], simulate=True)
    install(revisions["delta2"], site, keys[1], simulate=True)
    install(revisions["full2"], full, keys[1], simulate=True)
    tree = {p.name: p.read_bytes() for p in (site / "models" / "tiny-llama").iterdir()}
    assert tree == {p.name: p.read_bytes() for p in (full / "models" / "tiny-llama").iterdir()}
    assert tree == {p.name: p.read_bytes() for p in revisions["rev2"].iterdir()}


def test_delta_install_names_a_changed_base_file_and_a_missing_base(
    revisions: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.bundle_install import install
    from helpers.fake_engine import use_fake_engine

    use_fake_engine(monkeypatch, tmp_path)
    with pytest.raises(BundleError, match=r"needs its base 'tiny' \(manifest [0-9a-f]{12}\) installed"):
        install(revisions["delta2"], tmp_path / "bare", keys[1], simulate=True)
    assert not (tmp_path / "bare").exists()
    site = tmp_path / "site"
    install(revisions["full1"], site, keys[1], simulate=True)
    (site / "models" / "tiny-llama" / "model-00003.safetensors").unlink()
    with pytest.raises(BundleError, match=r"lacks pieces .*model file .*model-00003\.safetensors"):
        install(revisions["delta2"], site, keys[1], simulate=True)
    # A base file changed in place (same size) is caught by its sha256 while it is copied, before the model moves.
    shutil.copy(revisions["full1"] / "model" / "tiny-llama" / "model-00003.safetensors", site / "models" / "tiny-llama")
    _flip(site / "models" / "tiny-llama" / "config.json")
    # The message points at the site's file and the base, not at the delta bundle (which is fine).
    with pytest.raises(BundleError, match=r"config\.json, which the delta takes from the installed base, has changed"):
        install(revisions["delta2"], site, keys[1], simulate=True)
    assert (site / "models" / "tiny-llama" / "model-00002.safetensors").read_bytes() == (
        revisions["full1"] / "model" / "tiny-llama" / "model-00002.safetensors"
    ).read_bytes()


def test_bundle_diff_lists_the_changed_shard(revisions: dict[str, Path]) -> None:
    from deployctl.bundle.diff import diff

    result = diff(revisions["full1"], revisions["full2"])
    changed = [(c.name, c.change) for c in result.changes if c.change != "same" and c.kind == "model file"]
    assert changed == [("model-00002.safetensors", "changed")]
    assert 0 < result.delta_bytes < result.full_bytes


@pytest.mark.parametrize(
    "field",
    [
        {"path": "model/x/a.bin", "size": 1, "sha256": "a" * 64 + "\n", "kind": "model"},
        {"path": "model/x/a.bin\n", "size": 1, "sha256": "a" * 64, "kind": "model"},
    ],
)
def test_a_trailing_newline_in_a_manifest_field_is_refused(field: dict[str, object]) -> None:
    # `$` matches before a final newline: every manifest pattern must match the whole value.
    from pydantic import ValidationError

    from deployctl.bundle.format import Entry

    with pytest.raises(ValidationError):
        Entry(**field)  # type: ignore[arg-type]
