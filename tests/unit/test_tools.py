"""One way to run an outside tool (deployctl/tools.py), and only the facades run them."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from deployctl import tools
from deployctl.docker.compose import ComposeError, _compose
from deployctl.errors import EnvironmentProblem

PACKAGE = Path(__file__).parents[2] / "deployctl"
# Every module that may start a process itself: the runner (bundle/wheels.py streams pip through tools.start).
STARTS_PROCESSES = {"deployctl/tools.py"}


def test_a_command_gives_its_output_and_a_failure_carries_command_code_stdout_and_stderr() -> None:
    done = tools.run([sys.executable, "-c", "print('hello')"], timeout=60)
    assert done.stdout == "hello\n" and done.returncode == 0
    script = "import sys; print('partial'); print('first\\nthe cause', file=sys.stderr); sys.exit(3)"
    with pytest.raises(tools.ToolError) as err:
        tools.run([sys.executable, "-c", script, "--flag"], timeout=60)
    e = err.value
    assert e.returncode == 3 and e.stdout == "partial\n" and e.stderr == "first\nthe cause"
    assert e.command == [sys.executable, "-c", script, "--flag"]
    assert e.message == f"{Path(sys.executable).name} {script} failed: the cause"  # the first non-option word
    unchecked = tools.run([sys.executable, "-c", "import sys; sys.exit(4)"], timeout=60, check=False)
    assert unchecked.returncode == 4


def test_a_missing_tool_is_a_host_problem_naming_it() -> None:
    with pytest.raises(tools.ToolMissing) as err:
        tools.run(["deployctl-no-such-tool", "version"], timeout=5)
    assert isinstance(err.value, EnvironmentProblem) and err.value.exit_code == 3
    assert err.value.message == "deployctl-no-such-tool is not installed"
    with pytest.raises(tools.ToolMissing):
        tools.start(["deployctl-no-such-tool"])


def test_a_command_past_its_limit_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # sh writes its pid at once, then becomes `sleep`: the limit, not the sleep, is what ends it.
    with pytest.raises(tools.ToolTimedOut) as err:
        tools.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"], timeout=5)
    assert err.value.returncode is None and err.value.message == "sh did not finish in 5s"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped: no such process


def test_stdin_and_added_environment_reach_the_tool() -> None:
    done = tools.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], timeout=60, stdin="abc")
    assert done.stdout == "ABC\n"
    script = "import os; print(os.environ['DEPLOYCTL_TOOL_TEST'], 'PATH' in os.environ)"
    added = tools.run([sys.executable, "-c", script], timeout=60, env={"DEPLOYCTL_TOOL_TEST": "seen"})
    assert added.stdout == "seen True\n"  # added to the environment, which is kept
    proc = tools.start([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert proc.stdout is not None and sorted(proc.stdout.read().split()) == ["err", "out"]  # one stream
    assert proc.wait() == 0


def test_a_compose_failure_is_the_tool_error_with_docker_words_turned_into_host_problems() -> None:
    fails = [sys.executable, "-c", "import sys; print('a\\nb\\nc\\nd', file=sys.stderr); sys.exit(1)"]
    with pytest.raises(ComposeError) as err:
        _compose(fails, "up", timeout=60)
    assert isinstance(err.value, tools.ToolError) and err.value.returncode == 1
    assert err.value.message == "docker compose up failed: b | c | d"
    daemon = [
        sys.executable,
        "-c",
        "import sys; print('Cannot connect to the Docker daemon', file=sys.stderr); sys.exit(1)",
    ]
    with pytest.raises(EnvironmentProblem, match="Docker is not reachable"):
        _compose(daemon, "ps", timeout=60)


def _starts_processes(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id == "subprocess" and node.attr in {"run", "Popen", "call", "check_call", "check_output"}:
            return True
        if node.value.id == "os" and node.attr in {"system", "popen", "execv", "execvp", "spawnv"}:
            return True
    return False


def _runs(tree: ast.Module, tool: str) -> bool:
    """Give whether a module names `tool` as the first word of a command list (["helm", ...])."""
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == tool:
                return True
    return False


def _modules() -> list[tuple[str, ast.Module]]:
    root = PACKAGE.parent
    return [(p.relative_to(root).as_posix(), ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def test_only_the_runner_starts_processes() -> None:
    found = {path for path, tree in _modules() if _starts_processes(tree)}
    assert found <= STARTS_PROCESSES, (
        f"start outside tools through deployctl.tools.run/start: {found - STARTS_PROCESSES}"
    )
    assert _starts_processes(ast.parse("import subprocess\nsubprocess.Popen(['x'])\n"))


def test_only_kube_runs_helm_and_kubectl() -> None:
    outside = [path for path, tree in _modules() if not path.startswith("deployctl/kube/")]
    trees = dict(_modules())
    bad = [p for p in outside if _runs(trees[p], "helm") or _runs(trees[p], "kubectl")]
    assert not bad, f"helm or kubectl run outside deployctl/kube/: {bad}"
    assert _runs(ast.parse("cmd = ['helm', 'template']\n"), "helm")
