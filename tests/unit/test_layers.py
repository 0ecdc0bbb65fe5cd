"""The import rule of design.md, read from every module's source with `ast` (no module is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "deployctl"
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, ast.parse(path.read_text(), str(path))))
    return out


MODULES = _modules()


def imports(tree: ast.Module, module: str) -> set[str]:
    """Give every module name `module` imports, anywhere in its body (lazy imports included)."""
    found: set[str] = set()
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_rule_sees_every_module_and_lazy_imports() -> None:
    names = {n for n, _ in MODULES}
    assert {"deployctl.cli", "deployctl.ops.stack", "deployctl.docker.engine", "deployctl.hardware.nvml"} <= names
    lazy = ast.parse("def f():\n    from deployctl.ops import stack\n")
    assert "deployctl.ops.stack" in imports(lazy, "deployctl.probe.x")


def test_nothing_imports_the_cli() -> None:
    # `python -m deployctl` (deployctl/__main__.py) is the console script's twin: it starts the CLI.
    bad = [
        (m, i)
        for m, tree in MODULES
        if not _within(m, "deployctl.cli") and m != "deployctl.__main__"
        for i in imports(tree, m)
        if _within(i, "deployctl.cli")
    ]
    assert not bad, f"only the CLI may import the CLI: {bad}"


def test_nothing_below_ops_imports_ops() -> None:
    above = ("deployctl.cli", "deployctl.ops", "deployctl.__main__")
    bad = [
        (m, i)
        for m, tree in MODULES
        if not any(_within(m, a) for a in above)
        for i in imports(tree, m)
        if _within(i, "deployctl.ops")
    ]
    assert not bad, f"modules below ops import ops: {bad}"


def test_only_the_nvml_adapter_imports_pynvml() -> None:
    bad = [m for m, tree in MODULES if m != "deployctl.hardware.nvml" and "pynvml" in imports(tree, m)]
    assert not bad, f"pynvml imported outside hardware/nvml.py: {bad}"


def _runs_docker_cli(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "which" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value == "docker":
                return True
        if isinstance(func, ast.Attribute) and func.attr in SUBPROCESS_CALLS and node.args:
            for sub in ast.walk(node.args[0]):
                if isinstance(sub, ast.Constant) and sub.value == "docker":
                    return True
                if isinstance(sub, ast.Name | ast.Attribute) and "docker_binary" in ast.unparse(sub):
                    return True
    return False


def test_only_the_docker_facade_talks_to_docker() -> None:
    outside = [(m, t) for m, t in MODULES if not _within(m, "deployctl.docker")]
    sdk = [m for m, tree in outside if any(_within(i, "docker") for i in imports(tree, m))]
    assert not sdk, f"the docker SDK imported outside deployctl/docker/: {sdk}"
    cli = [m for m, tree in outside if _runs_docker_cli(tree)]
    assert not cli, f"the docker CLI run outside deployctl/docker/: {cli}"


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess\nsubprocess.run(['docker', 'ps'])\n",
        "import shutil\nshutil.which('docker')\n",
        "import subprocess\nsubprocess.Popen([docker_binary(), 'compose', 'up'])\n",
    ],
)
def test_the_docker_cli_check_catches_each_way_of_running_it(source: str) -> None:
    assert _runs_docker_cli(ast.parse(source))


def test_every_module_imports_first_without_a_cycle() -> None:
    """Import each module as the first deployctl module of a process (a cycle shows only in some orders)."""
    import subprocess
    import sys

    names = [n for n, _ in MODULES if not n.endswith("__main__")]
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'deployctl' or m.startswith('deployctl.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
