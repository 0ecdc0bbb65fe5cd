"""Layer arithmetic, path globs and slim plans, without Docker."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from deployctl.errors import InputError
from deployctl.images import slim
from deployctl.images.layers import ImageScan, LayerFiles, apply_layers, read_layer


def _layer_tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    buf.seek(0)
    return buf


def test_read_layer_sees_files_links_whiteouts_and_opaque_dirs() -> None:
    layer = read_layer(
        _layer_tar(
            {"usr/a": b"x" * 10, "./.wh.blob": b"", "opt/.wh..wh..opq": b"", "etc/.wh.cfg": b""},
            {"usr/bin/gcc": "gcc-12"},
        )
    )
    assert layer.files == {"/usr/a": 10, "/usr/bin/gcc": 6}
    assert layer.deleted == {"/blob", "/etc/cfg"} and layer.opaque == {"/opt"}


def test_wasted_bytes_come_from_overwrites_deletions_and_opaque_dirs() -> None:
    base = LayerFiles(files={"/blob": 100, "/keep": 5, "/opt/x": 7, "/opt/y": 3, "/dir/f": 11})
    second = LayerFiles(files={"/keep": 6}, deleted={"/blob", "/dir"})
    third = LayerFiles(files={"/opt/z": 1}, opaque={"/opt"})
    final, wasted = apply_layers([base, second, third])
    assert final == {"/keep": 6, "/opt/z": 1}
    assert wasted == [100 + 5 + 7 + 3 + 11, 0, 0]


def test_largest_dirs() -> None:
    s = ImageScan("x", "id", 0, [], 0, {"/usr/lib/a.so": 50, "/usr/lib/b.so": 30, "/usr/bin/c": 5, "/etc/d": 1})
    assert s.largest_dirs(depth=2)[:2] == [("/usr", 85), ("/usr/lib", 80)]


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/usr/src/.venv/**/__pycache__", "/usr/src/.venv/lib/python3.11/site-packages/torch/__pycache__", True),
        ("/usr/src/.venv/**/__pycache__", "/usr/src/.venv/__pycache__", True),
        ("/var/lib/apt/lists/*", "/var/lib/apt/lists/x_Packages", True),
        ("/var/lib/apt/lists/*", "/var/lib/apt/lists/partial/y", False),
        ("/usr/lib/x86_64-linux-gnu/*.a", "/usr/lib/x86_64-linux-gnu/libc.a", True),
        ("/usr/lib/x86_64-linux-gnu/*.a", "/usr/lib/x86_64-linux-gnu/libc.so", False),
        ("/usr/src/.venv/lib/python3.*/site-packages/eetq*", "/usr/src/.venv/lib/python3.11/site-packages/eetq", True),
    ],
)
def test_globs(pattern: str, path: str, hit: bool) -> None:
    assert slim.matches(pattern, path) is hit


def _scan(files: dict[str, int]) -> ImageScan:
    return ImageScan("img", "id", sum(files.values()), [], 0, files)


SP = "/usr/src/.venv/lib/python3.11/site-packages"


def test_builtin_profile_plan_removes_what_it_names_and_keeps_what_gptq_needs() -> None:
    profile = slim.load_profile("tgi-3.3-gptq-ada")
    files = {
        f"{SP}/eetq/_C.so": 100,
        f"{SP}/eetq/__init__.py": 1,
        f"{SP}/marlin_kernels/_C.so": 70,
        f"{SP}/marlin_kernels/__pycache__/a.pyc": 3,
        f"{SP}/torch/tests/t.py": 9,
        "/var/cache/apt/archives/a.deb": 20,
        "/usr/bin/gcc-12": 1,
        f"{SP}/mamba_ssm/_C.so": 40,
        f"{SP}/text_generation_server/__init__.py": 0,
        "/usr/local/bin/text-generation-launcher": 0,
    }
    p = slim.plan(_scan(files), profile)
    by = {g.name: g for g in p.groups}
    assert by["kernels for other quantization methods"].bytes == 101
    assert by["kernels for other quantization methods"].roots == [f"{SP}/eetq"]
    assert by["python bytecode caches"].roots == [f"{SP}/marlin_kernels/__pycache__"]
    assert by["kernels for model families the profile does not serve"].bytes == 40
    assert p.bytes == 101 + 3 + 9 + 20 + 40
    assert f"{SP}/marlin_kernels/_C.so" not in p.roots() and "/usr/bin/gcc-12" not in p.roots()


def test_a_profile_that_would_remove_a_kept_path_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("""name: bad
description: removes the compiler
image_family: x
groups:
  - name: compilers
    why: smaller
    remove: [/usr/lib/gcc]
keep:
  - path: /usr/lib/gcc
    why: Triton compiles kernels at run time
verify:
  - name: ok
    command: ["true"]
""")
    with pytest.raises(InputError, match=r"would remove /usr/lib/gcc/.*cc1, which must stay: Triton compiles"):
        slim.plan(_scan({"/usr/lib/gcc/x86_64-linux-gnu/12/cc1": 5}), slim.load_profile(str(bad)))


def test_an_image_of_another_family_is_refused_in_one_line() -> None:
    profile = slim.load_profile("tgi-3.3-gptq-ada")
    debian = _scan({"/usr/bin/python3.11": 6_000_000, "/usr/lib/python3/dist-packages/aiohttp/__init__.py": 10})
    with pytest.raises(InputError) as err:
        slim.plan(debian, profile)
    assert "img is not a ghcr.io/huggingface/text-generation-inference:3.3 image" in err.value.message
    assert "text-generation-launcher" in err.value.message and "\n" not in str(err.value)


def test_profile_errors_are_clear(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="unknown"):
        slim.load_profile("no-such-profile")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ngroups: []\n")
    with pytest.raises(InputError, match="not a valid slim profile"):
        slim.load_profile(str(broken))


def test_dockerfile_keeps_configuration_and_escapes_env() -> None:
    text = slim.dockerfile(
        "src:1",
        "p",
        {
            "Env": ["PATH=/usr/bin", 'Q=a "b" $c \\d'],
            "WorkingDir": "/usr/src",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"a": "b"},
            "Entrypoint": ["text-generation-launcher"],
            "Cmd": ["--json-output"],
            "User": "",
        },
    )
    assert 'ENV Q="a \\"b\\" \\$c \\\\d"' in text
    assert 'ENTRYPOINT ["text-generation-launcher"]' in text and 'CMD ["--json-output"]' in text
    assert "WORKDIR /usr/src" in text and "EXPOSE 80/tcp" in text and "FROM scratch" in text
    assert "COPY --from=source / /" in text and "USER" not in text


def test_the_exporter_image_carries_every_deployctl_module_the_exporter_imports() -> None:
    """The exporter image copies a list of deployctl's modules; a module they import (at the top or inside a
    function) that is not on the list fails in the container at start-up, which only the Docker tier would see."""
    import ast

    import deployctl
    from deployctl.images.build import EXPORTER_MODULES

    root = Path(deployctl.__file__).parent
    listed = set(EXPORTER_MODULES)
    missing = set()
    for rel in EXPORTER_MODULES:
        for node in ast.walk(ast.parse((root / rel).read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "deployctl":
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == "deployctl"]
            for name in names:
                parts = name.split(".")[1:]
                as_module, as_package = "/".join(parts) + ".py", "/".join([*parts, "__init__.py"])
                if (root / as_module).is_file() and as_module not in listed:
                    missing.add(f"{as_module} (imported by {rel})")
                if parts and (root / as_package).is_file() and as_package not in listed:
                    missing.add(f"{as_package} (imported by {rel})")
    assert not missing, f"add to EXPORTER_MODULES: {sorted(missing)}"
