"""Every layering rule of design.md ("Layout": the table's "must not" column and the paragraph below it),
each in its own words, read from every module's source with `ast` (no module is imported but the engines'
registry and the GPU catalogue, for the rules that are about them).

RULES lists them all; each names the test that checks it. A rule that another test file checks names that
file, and a test here makes sure the file and the test are still there.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "deployctl"
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}

# design.md: `cli → ops → (targets, stackdir, docker, kube, bundle, images, probe, hardware) → (planner,
# engines) → (models, gpus, plan, spec, errors)`. The small helpers every floor uses (http, fsio, safepath,
# boundedparse, templating, the package's version) sit on the ground floor with errors. `monitoring` (#25: metric
# names, rules, dashboards, the GPU exporter) is on the middle floor: it reads the plan, engines' facts and NVML
# (through hardware), and targets, images and ops use it; it talks to no transport itself. 0 is the top.
FLOORS: dict[str, int] = {
    "cli": 0,
    "__main__": 0,
    "ops": 1,
    **dict.fromkeys(
        ["targets", "stackdir", "docker", "kube", "bundle", "images", "probe", "hardware", "monitoring"], 2
    ),
    **dict.fromkeys(["planner", "engines"], 3),
    **dict.fromkeys(
        ["models", "gpus", "plan", "spec", "errors", "http", "fsio", "safepath", "boundedparse", "templating", ""], 4
    ),
}
GROUND = 4
MIDDLE = 2
# A helper module at the package's root (deployctl/<name>.py) not named above sits on the ground floor, and
# the rules below hold it to that (it imports nothing above it); a new package has to be placed above.
for _path in PACKAGE.glob("*.py"):
    FLOORS.setdefault("" if _path.stem == "__init__" else _path.stem, GROUND)
SIM = "sim"  # apart from the floors: nothing but --simulate (through its own process) and tests use it

RULES = [
    ("Dependencies flow downward: cli → ops → (targets, stackdir, docker, kube, bundle, images, probe, hardware)"
     " → (planner, engines) → (models, gpus, plan, spec, errors)", "test_dependencies_flow_downward"),
    ("Nothing imports cli", "test_nothing_imports_the_cli"),
    ("nothing below ops imports ops", "test_nothing_below_ops_imports_ops"),
    ("engines do not import the planner (the planner asks engines)", "test_dependencies_flow_downward"),
    ("the values every layer passes (Gpu, Host, Plan) live on the ground floor",
     "test_the_values_every_layer_passes_live_on_the_ground_floor"),
    ("Only hardware/nvml.py imports pynvml", "test_only_the_nvml_adapter_imports_pynvml"),
    ("only docker/ talks to Docker", "test_only_the_docker_facade_talks_to_docker"),
    ("only kube/ [talks] to kubectl/helm", "test_only_the_kube_transport_talks_to_kubectl_and_helm"),
    ("cli/ must not hold logic, touch Docker, NVML or files directly", "test_the_cli_does_not_touch_docker_nvml_or_files"),
    ("ops/ must not hold math or templates", "test_ops_holds_no_math_or_templates"),
    ("plan.py must not import anything above the ground floor", "test_dependencies_flow_downward"),
    ("models/ must not download anything", "test_models_download_nothing"),
    ("gpus/ must not import pynvml", "test_only_the_nvml_adapter_imports_pynvml"),
    ("engines/ must not know about Compose or Kubernetes", "test_engines_know_nothing_of_compose_or_kubernetes"),
    ("planner/ must not do I/O", "test_the_planner_does_no_io"),
    ("targets/ must not decide engine flags", "test_targets_decide_no_engine_flags"),
    ("templates/ must not contain logic beyond loops and conditionals", "test_templates_hold_only_loops_and_conditionals"),
    ("docker/ must not leak raw SDK objects", "test_transports_leak_no_raw_objects"),
    ("kube/ must not leak raw JSON", "test_transports_leak_no_raw_objects"),
    ("bundle/ must not trust a byte before its checksum matches", "tests/unit/test_bundle_hostile.py"),
    ("sim/ must not be used by anything but --simulate and tests", "test_nothing_but_the_simulator_imports_it"),
    ("tests/ must not read files outside the repository", "tests/unit/test_hermetic.py"),
    ("tests/ must not touch Docker objects they did not create", "tests/e2e/conftest.py"),
    ("bench/ must not be timed tests", "test_bench_holds_no_tests"),
    ("Adding an engine is one module in engines/ (its image, flags, env, dialect, memory rule per release, security"
     " profile, start-up log lines) plus simulator routes if its API is new", "tests/unit/test_toy_engine.py"),
    ("adding a GPU is one catalogue entry", "test_every_catalogue_gpu_plans_with_every_engine"),
    ("adding a target is one module in targets/ plus templates", None),  # shape checked once targets have a Target interface (#21 item 4)
    ("(#21) no comparison with an engine's name outside engines/ and sim/", "test_no_engine_name_is_compared_outside_engines_and_sim"),
]  # fmt: skip


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, ast.parse(path.read_text(), str(path))))
    return out


MODULES = _modules()


def imports(tree: ast.Module, module: str) -> set[str]:
    """Give every module name `module` imports, anywhere in its body (lazy and type-checking imports included)."""
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


def _top(name: str) -> str:
    """Give the floor key of a deployctl module: its first part below `deployctl` ('' for the package)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _known_top(name: str) -> str:
    """Give the floor key of an imported deployctl name (`from deployctl import engines` names the package)."""
    top = _top(name)
    return top if top in FLOORS or top == SIM else ""  # `from deployctl import __version__` names the package


def _deployctl_imports(tree: ast.Module, module: str) -> Iterator[str]:
    for name in imports(tree, module):
        if _within(name, "deployctl") and name != "deployctl":
            yield name


def _edges() -> Iterator[tuple[str, str]]:
    """Give (module, imported deployctl module) for every import between two different packages."""
    for module, tree in MODULES:
        for name in _deployctl_imports(tree, module):
            if _known_top(name) != _top(module):
                yield module, name


def test_the_rule_sees_every_module_and_lazy_imports() -> None:
    names = {n for n, _ in MODULES}
    assert {"deployctl.cli", "deployctl.ops.stack", "deployctl.docker.engine", "deployctl.hardware.nvml"} <= names
    lazy = ast.parse("def f():\n    from deployctl.ops import stack\n")
    assert "deployctl.ops.stack" in imports(lazy, "deployctl.probe.x")


def test_every_rule_names_a_check_that_exists() -> None:
    here = {name for name in globals() if name.startswith("test_")}
    for words, check in RULES:
        if check is None:
            continue
        if check.startswith("tests/"):
            assert (ROOT / check).is_file(), f"{words!r}: {check} is gone"
            assert "def test_" in (ROOT / check).read_text() or "fixture" in (ROOT / check).read_text(), check
        else:
            assert check in here, f"{words!r}: no test {check}"


def test_every_module_is_on_a_floor() -> None:
    tops = {_top(m) for m, _ in MODULES} - {SIM}
    assert not tops - set(FLOORS), f"put these packages on a floor of design.md: {sorted(tops - set(FLOORS))}"


def _package_cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles, done = [], set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            walk(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        walk(start, [])
    return cycles


def test_dependencies_flow_downward() -> None:
    """No import runs upward; on one floor, packages import each other one way only; and by name: engines do
    not import the planner, gpus does not import hardware, hardware does not import probe, monitoring does not
    import the targets or a transport (hardware does not import monitoring)."""
    upward = [
        (m, i)
        for m, i in _edges()
        if _top(m) != SIM and _known_top(i) != SIM and FLOORS[_known_top(i)] < FLOORS[_top(m)]
    ]
    assert not upward, f"imports that run upward: {upward}"
    same_floor = {
        (_top(m), _known_top(i))
        for m, i in _edges()
        if _top(m) != SIM and _known_top(i) != SIM and FLOORS[_known_top(i)] == FLOORS[_top(m)]
    }
    assert not _package_cycles(same_floor), f"packages of one floor import each other both ways: {same_floor}"
    named = {("engines", "planner"), ("gpus", "hardware"), ("hardware", "probe"), ("plan", "planner")}
    # monitoring renders files and reads NVML through hardware: the targets place its files, not the other way.
    named |= {("monitoring", "targets"), ("monitoring", "docker"), ("monitoring", "kube"), ("hardware", "monitoring")}
    assert not named & same_floor, f"imports design.md names as wrong: {named & same_floor}"


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


def test_the_values_every_layer_passes_live_on_the_ground_floor() -> None:
    homes = {
        node.name: m
        for m, tree in MODULES
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name in {"Gpu", "Host", "Plan"}
    }
    assert set(homes) == {"Gpu", "Host", "Plan"}
    assert all(FLOORS[_top(m)] == GROUND for m in homes.values()), homes


def test_only_the_nvml_adapter_imports_pynvml() -> None:
    bad = [m for m, tree in MODULES if m != "deployctl.hardware.nvml" and "pynvml" in imports(tree, m)]
    assert not bad, f"pynvml imported outside hardware/nvml.py: {bad}"


def _runs(tree: ast.Module, tools: set[str]) -> bool:
    """Whether a module starts one of `tools` (`docker`, `helm`, ...) or looks for it on PATH."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "which" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value in tools:
                return True
        if isinstance(func, ast.Attribute) and func.attr in SUBPROCESS_CALLS and node.args:
            for sub in ast.walk(node.args[0]):
                if isinstance(sub, ast.Constant) and sub.value in tools:
                    return True
                if isinstance(sub, ast.Name | ast.Attribute) and any(f"{t}_binary" in ast.unparse(sub) for t in tools):
                    return True
    return False


def _names_tool_and_runs_something(tree: ast.Module, tools: set[str]) -> bool:
    """Whether a module holds a tool's name as a value and starts processes (a transport passing the tool's name)."""
    named = any(isinstance(n, ast.Constant) and n.value in tools for n in ast.walk(tree))
    runs = any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and (n.func.attr in SUBPROCESS_CALLS or n.func.attr == "which")
        for n in ast.walk(tree)
    )
    return named and runs


def test_only_the_docker_facade_talks_to_docker() -> None:
    outside = [(m, t) for m, t in MODULES if not _within(m, "deployctl.docker")]
    sdk = [m for m, tree in outside if any(_within(i, "docker") for i in imports(tree, m))]
    assert not sdk, f"the docker SDK imported outside deployctl/docker/: {sdk}"
    cli = [m for m, tree in outside if _runs(tree, {"docker"})]
    assert not cli, f"the docker CLI run outside deployctl/docker/: {cli}"


def test_only_the_kube_transport_talks_to_kubectl_and_helm() -> None:
    tools = {"kubectl", "helm"}
    # Until the kube/ transport lands (#21 item 4), ops/k8s.py holds the conversation with both tools.
    allowed = {"deployctl.kube"} if (PACKAGE / "kube").is_dir() else {"deployctl.kube", "deployctl.ops.k8s"}
    bad = [
        m
        for m, tree in MODULES
        if not any(_within(m, a) for a in allowed)
        and (_runs(tree, tools) or _names_tool_and_runs_something(tree, tools))
    ]
    assert not bad, f"kubectl or helm run outside deployctl/kube/: {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess\nsubprocess.run(['docker', 'ps'])\n",
        "import shutil\nshutil.which('docker')\n",
        "import subprocess\nsubprocess.Popen([docker_binary(), 'compose', 'up'])\n",
    ],
)
def test_the_docker_cli_check_catches_each_way_of_running_it(source: str) -> None:
    assert _runs(ast.parse(source), {"docker"})


def test_the_kube_check_catches_a_runner_given_the_tools_name() -> None:
    source = "import subprocess\ndef run(tool, *a):\n    subprocess.run([tool, *a])\nrun('kubectl', 'get', 'pods')\n"
    assert _names_tool_and_runs_something(ast.parse(source), {"kubectl", "helm"})


def _cli_below_ops(edges: Iterator[tuple[str, str]]) -> set[tuple[str, str]]:
    """Give (CLI module, middle-floor package) for each import by the CLI of the floor below ops."""
    return {
        (m, _known_top(i))
        for m, i in edges
        if _within(m, "deployctl.cli") and _known_top(i) in FLOORS and FLOORS[_known_top(i)] == MIDDLE
    }


def test_the_thin_cli_check_catches_a_lazy_import_of_the_middle_floor() -> None:
    tree = ast.parse(
        "def show():\n    from deployctl.hardware import nvml\n    from deployctl.ops import power_policy\n"
    )
    edges = ((m, i) for m in ["deployctl.cli.power"] for i in imports(tree, m) if _within(i, "deployctl"))
    assert _cli_below_ops(edges) == {("deployctl.cli.power", "hardware")}


def test_the_cli_does_not_touch_docker_nvml_or_files() -> None:
    """The CLI imports ops, the core (planner, engines) and the ground floor: never the floor that talks to
    Docker, NVML, files or the network; and opens no file itself."""
    found = _cli_below_ops(_edges())
    assert not found, f"the CLI imports the middle floor (go through an ops function): {sorted(found)}"
    for m, tree in MODULES:
        if _within(m, "deployctl.cli"):
            assert not any(_io_call(n) for n in ast.walk(tree)), f"{m} reads or writes files itself"
            assert not {"docker", "pynvml"} & {i.split(".")[0] for i in imports(tree, m)}, m


IO_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "open", "mkdir", "unlink", "rmdir", "touch"}
IO_MODULES = {"subprocess", "socket", "urllib", "shutil", "http", "aiohttp", "requests", "httpx", "os", "io"}


def _io_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name) and func.id in {"open", "print", "input"}:
        return True
    return isinstance(func, ast.Attribute) and func.attr in IO_METHODS


def test_the_planner_does_no_io() -> None:
    for m, tree in MODULES:
        if _within(m, "deployctl.planner"):
            assert not {i.split(".")[0] for i in imports(tree, m)} & IO_MODULES, m
            assert not {i for i in imports(tree, m) if _within(i, "deployctl.http") or _within(i, "deployctl.fsio")}, m
            assert not any(_io_call(n) for n in ast.walk(tree)), f"{m} does I/O"


def test_models_download_nothing() -> None:
    network = {"urllib", "http", "socket", "requests", "httpx", "aiohttp", "huggingface_hub", "subprocess"}
    for m, tree in MODULES:
        if _within(m, "deployctl.models"):
            names = imports(tree, m)
            assert not {i.split(".")[0] for i in names} & network, m
            assert not any(_within(i, "deployctl.http") for i in names), m


def test_engines_know_nothing_of_compose_or_kubernetes() -> None:
    words = re.compile(r"compose|helm|kube|k8s|chart", re.IGNORECASE)
    for m, tree in MODULES:
        if _within(m, "deployctl.engines"):
            assert not [
                i for i in imports(tree, m) if any(_within(i, f"deployctl.{p}") for p in ("targets", "docker", "kube"))
            ], m
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
            assert not [n for n in names if words.search(n)], m


def test_targets_decide_no_engine_flags() -> None:
    from deployctl import engines

    flags = {f for name in engines.names() for f in engines.get(name).flags}
    for m, tree in MODULES:
        if _within(m, "deployctl.targets"):
            found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in flags}
            assert not found, f"{m} spells engine flags: {found}"


def test_ops_holds_no_math_or_templates() -> None:
    """Templates: ops renders none (targets do). Math: ops asks the planner, and imports none of its arithmetic."""
    for m, tree in MODULES:
        if _within(m, "deployctl.ops"):
            names = imports(tree, m)
            assert not {i.split(".")[0] for i in names} & {"jinja2"}, m
            assert not any(_within(i, "deployctl.templating") for i in names), m
            arithmetic = ("deployctl.planner.memory", "deployctl.planner.fit", "deployctl.engines.memory")
            assert not [i for i in names if any(_within(i, a) for a in arithmetic)], m


JINJA_TAG = re.compile(r"{%-?\s*(\w+)")
JINJA_ALLOWED = {"for", "endfor", "if", "elif", "else", "endif"}


def test_templates_hold_only_loops_and_conditionals() -> None:
    """The Jinja templates deployctl renders: loops and conditionals only (the Helm chart's own Go templates run
    in Helm with a site's values; test_helm.py lints them strictly)."""
    templates = sorted((PACKAGE / "templates").rglob("*.j2"))
    assert len(templates) >= 5
    for path in templates:
        tags = set(JINJA_TAG.findall(path.read_text()))
        assert tags <= JINJA_ALLOWED, f"{path.name}: {tags - JINJA_ALLOWED}"


def test_transports_leak_no_raw_objects() -> None:
    """docker/ and kube/ give typed results: no public function returns Any, an SDK object or raw JSON."""
    for m, tree in MODULES:
        if not (_within(m, "deployctl.docker") or _within(m, "deployctl.kube")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.returns is not None:
                returned = ast.unparse(node.returns)
                assert "Any" not in returned and not returned.startswith("docker."), f"{m}.{node.name} -> {returned}"


def test_nothing_but_the_simulator_imports_it() -> None:
    """The simulator runs in a process of its own (its image carries deployctl/sim only): nothing else imports
    it, and it imports nothing else of deployctl."""
    users = [m for m, tree in MODULES if _top(m) != SIM and any(_within(i, "deployctl.sim") for i in imports(tree, m))]
    assert not users, f"the simulator imported by {users}"
    for m, tree in MODULES:
        if _top(m) == SIM:
            outside = {i for i in _deployctl_imports(tree, m) if not _within(i, "deployctl.sim")}
            assert outside <= {"deployctl.__version__"}, f"{m} imports {outside}"


def test_bench_holds_no_tests() -> None:
    for path in (ROOT / "bench").glob("*.py"):
        assert "def test_" not in path.read_text(), f"{path.name}: benchmarks print ratios, they are not tests"


def test_every_catalogue_gpu_plans_with_every_engine() -> None:
    """A GPU is one catalogue entry: each one plans with each engine, with nothing else to add."""
    from deployctl import engines, gpus, models, planner, spec

    facts = models.preset("llama-3.1-8b-instruct-gptq")
    for name in gpus.PROFILES:
        for engine in engines.names():
            p = planner.plan(spec.parse(f"engine: {engine}\n"), facts, gpus.host(name, 1))
            assert p.gpus[0].kv_tokens >= p.limits.max_total_tokens


def _engine_name_comparisons(tree: ast.Module, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                    found.append(ast.unparse(node))
        elif isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
            value = node.pattern.value
            if isinstance(value, ast.Constant) and value.value in names:
                found.append(f"case {value.value!r}")
    return found


def test_no_engine_name_is_compared_outside_engines_and_sim() -> None:
    from deployctl import engines

    names = set(engines.names())
    bad = {
        m: found
        for m, tree in MODULES
        if not (_within(m, "deployctl.engines") or _within(m, "deployctl.sim"))
        and (found := _engine_name_comparisons(tree, names))
    }
    assert not bad, f"compared with an engine's name: {bad}"


@pytest.mark.parametrize(
    "source",
    ['if kind == "vllm": pass\n', 'x = name in ("tgi", "other")\n', 'match e:\n    case "tgi":\n        pass\n'],
)
def test_the_name_check_catches_each_way_of_comparing(source: str) -> None:
    assert _engine_name_comparisons(ast.parse(source), {"tgi", "vllm"})


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
