"""A workstation that must not break (#13), on the real engine: ownership, safe re-render, upgrades with
health-gated rollback, interrupted `up`. Each test has its own project names, ports and directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.failpoints import Pauses

from .conftest import Project, deployctl

GOOD = "limits:\n  max_total_tokens: 4096\n"  # a second, healthy revision of the same stack
BODY = {"inputs": "hi", "parameters": {"max_new_tokens": 1}}


class Stacks:
    """Projects made by a test, each removed afterwards by name (whatever directory it ran from)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: set[str] = set()

    def new(self, where: str, name: str | None = None) -> Project:
        (self.root / where).mkdir()
        p = Project(self.root / where)
        if name is not None:
            p.name = name
            p.write()
        self.names.add(p.name)
        return p

    def cleanup(self) -> None:
        for name in self.names:
            subprocess.run(
                ["docker", "compose", "-p", name, "down", "--remove-orphans", "-t", "1"], capture_output=True
            )


@pytest.fixture
def stacks(tmp_path: Path, sim_image: str) -> Iterator[Stacks]:
    s = Stacks(tmp_path)
    yield s
    s.cleanup()


def _up(p: Project, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    done = p.run("up", "--simulate", *args, **kw)  # type: ignore[arg-type]
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _revision(p: Project) -> int:
    return int(json.loads(p.run("status", "--json").stdout)["revision"])


def test_same_name_in_two_directories_is_refused_and_the_first_untouched(stacks: Stacks) -> None:
    first = stacks.new("prod")
    second = stacks.new("rehearsal", name=first.name)
    assert _up(first).returncode == 0
    refused = _up(second)
    assert refused.returncode == 2
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert str(first.stack) in line and f"deployctl down --stack-dir {first.stack}" in line
    assert first.run("health").returncode == 0
    # a stack rendered in the second directory sees the project but does not act on it
    assert second.run("render", "--simulate").returncode == 0
    assert second.run("status").returncode == 5 and second.run("down").returncode == 5
    assert first.run("health").returncode == 0 and len(first.containers()) == 1


def test_a_renamed_stack_is_detected_then_replaced_or_removed_by_name(stacks: Stacks) -> None:
    p = stacks.new("s")
    old = p.name
    assert _up(p).returncode == 0
    p.name = f"{old}-renamed"
    stacks.names.add(p.name)
    p.write()
    refused = _up(p)
    assert refused.returncode == 2 and f"down --project {old}" in refused.stderr and "--replace" in refused.stderr
    replaced = _up(p, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert f"removed {old}" in replaced.stdout
    assert _containers(old) == [] and len(p.containers()) == 1
    # renamed again, only rendered: status names the old project, `down --project` removes it
    older = p.name
    p.name = f"{old}-third"
    stacks.names.add(p.name)
    p.write()
    assert p.run("render", "--simulate").returncode == 0
    status = p.run("status")
    assert f"deployctl down --project {older}" in status.stdout
    assert p.run("down", "--project", older).returncode == 0
    assert _containers(older) == []


def _containers(project: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def test_user_file_and_override_survive_render_and_up_uses_the_override(stacks: Stacks) -> None:
    p = stacks.new("s")
    assert p.run("render", "--simulate").returncode == 0
    (p.stack / "notes.txt").write_text("ask Ann before restarting\n")
    (p.stack / "compose.override.yaml").write_text(
        'services:\n  engine:\n    labels:\n      site.local-change: "kept"\n'
    )
    p.write(GOOD)
    assert p.run("render", "--simulate").returncode == 0
    assert (p.stack / "notes.txt").read_text() == "ask Ann before restarting\n"
    assert _up(p).returncode == 0
    [cid] = p.containers()
    labels = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True).stdout)[0]
    assert labels["Config"]["Labels"]["site.local-change"] == "kept"
    assert labels["Config"]["Labels"]["ai.deployctl.stack-dir"] == str(p.stack)
    assert (p.stack / "compose.override.yaml").exists() and (p.stack / "notes.txt").exists()


class Poller(threading.Thread):
    """A client that keeps asking for one token and notes each answer's time and success."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.results: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                ok = requests.post(f"{self.url}/generate", json=BODY, timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            self.results.append((t, ok))
            time.sleep(0.05)


def test_never_healthy_upgrade_rolls_back_with_one_gap_only(stacks: Stacks) -> None:
    p = stacks.new("s")
    assert _up(p).returncode == 0
    client = Poller(p.url)
    client.start()
    time.sleep(1)
    p.write(GOOD)
    started = time.monotonic()
    failed = _up(p, "--sim-fault", "never-healthy", "--timeout", "5")
    took = time.monotonic() - started
    health = p.run("health")
    time.sleep(1)
    client.stop.set()
    client.join()
    assert failed.returncode == 1, failed.stderr
    assert "rolled back to revision 1" in failed.stderr and "last log lines" in failed.stderr
    assert health.returncode == 0, health.stdout  # at once: the rollback waited for /health itself
    assert _revision(p) == 1
    gaps = _failure_windows(client.results)
    shown = ", ".join(f"{g:.1f}s" for g in gaps)
    failures = sum(not ok for _, ok in client.results)
    print(f"\nrollback: up took {took:.1f}s; {len(client.results)} requests, {failures} failed, in gaps of {shown}")
    # the only failures: the swap to the new revision and the swap back (never-healthy still serves in between)
    assert 1 <= len(gaps) <= 2 and client.results[-1][1]
    assert sum(gaps) < took


def _failure_windows(results: list[tuple[float, bool]]) -> list[float]:
    """Give the length of each run of failed requests (first failure to the next success)."""
    windows: list[float] = []
    start: float | None = None
    for t, ok in results:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            windows.append(t - start)
            start = None
    if start is not None:
        windows.append(results[-1][0] - start)
    return windows


def test_good_upgrade_shows_its_diff_moves_the_revision_and_rollback_by_hand(stacks: Stacks) -> None:
    p = stacks.new("s")
    assert _up(p).returncode == 0 and _revision(p) == 1
    [before] = p.containers()
    again = _up(p)  # nothing changed: same revision, same container, no restart
    assert again.returncode == 0 and "(revision 1)" in again.stdout and p.containers() == [before]
    p.write(GOOD)
    dry = _up(p, "--dry-run")
    assert dry.returncode == 0
    assert '+      - "4096"' in dry.stdout and "+++ new/plan.json" in dry.stdout
    assert "would start revision 2" in dry.stdout and _revision(p) == 1
    up = _up(p)
    assert up.returncode == 0 and "upgraded revision 1 -> 2" in up.stdout
    assert _revision(p) == 2
    back = p.run("rollback")
    assert back.returncode == 0 and "rolled back from revision 2 to 1" in back.stdout
    assert p.run("health").returncode == 0 and _revision(p) == 1
    assert "8192" in (p.stack / "compose.yaml").read_text()
    assert p.run("rollback").returncode == 5  # nothing older than revision 1


def _max_total_tokens(p: Project) -> int:
    return int(requests.get(f"{p.url}/info", timeout=10).json()["max_total_tokens"])


def test_rollback_and_automatic_rollback_go_back_along_what_ran(stacks: Stacks) -> None:
    """Issue 20's sequence: the automatic rollback restores what was running (revision 1, 8192), not the
    highest-numbered good copy (revision 2, 4096); `rollback` after 1 -> 4 goes to 1, not to 2."""
    p = stacks.new("s")
    assert _up(p).returncode == 0 and _revision(p) == 1 and _max_total_tokens(p) == 8192
    assert _up(p, "--max-total-tokens", "4096").returncode == 0 and _max_total_tokens(p) == 4096
    back = p.run("rollback")
    assert back.returncode == 0 and "rolled back from revision 2 to 1" in back.stdout, back.stderr
    failed = _up(p, "--sim-fault", "never-healthy", "--timeout", "8")
    assert failed.returncode == 1 and "revision 3 failed" in failed.stderr, failed.stderr
    assert "rolled back to revision 1" in failed.stderr
    assert _revision(p) == 1 and _max_total_tokens(p) == 8192
    assert _up(p, "--max-total-tokens", "6144").returncode == 0 and _revision(p) == 4
    back = p.run("rollback")
    assert back.returncode == 0 and "rolled back from revision 4 to 1" in back.stdout, back.stderr
    assert _max_total_tokens(p) == 8192
    nothing = p.run("rollback")  # nothing ran before revision 1
    assert nothing.returncode == 5 and "no revision that ran before revision 1" in nothing.stderr


def test_a_bare_up_keeps_how_the_stack_was_started(stacks: Stacks) -> None:
    """README's command 1, then its upgrade line as printed: a bare `up --dry-run` and `up` stay simulated
    (no NVIDIA driver needed) and `rollback` says there is nothing older (exit 5). A stack started as
    simulated vLLM stays that too; `--no-simulate` leaves the simulator."""
    p = stacks.new("s")
    assert p.run("up", "--simulate").returncode == 0  # README's command 1 (with the project's own port)
    dry, up, back = p.run("up", "--dry-run"), p.run("up"), p.run("rollback")  # `up --dry-run; up; rollback`
    assert (dry.returncode, up.returncode, back.returncode) == (0, 0, 5), (dry.stderr, up.stderr, back.stderr)
    assert "keeping how this stack was started: --simulate" in dry.stderr and "nothing would change" in dry.stdout
    assert "(simulated engine)" in up.stdout and "(revision 1)" in up.stdout
    vllm = p.run("up", "--simulate", "--engine", "vllm")
    assert vllm.returncode == 0 and "upgraded revision 1 -> 2" in vllm.stdout, vllm.stderr
    again = p.run("up", "--dry-run")
    assert "keeping how this stack was started: --simulate --engine vllm" in again.stderr
    assert again.returncode == 0 and "nothing would change" in again.stdout
    real = p.run("up", "--no-simulate", "--dry-run")  # leaving the mode is one flag away
    assert real.returncode == 3 and "NVIDIA" in real.stderr and "--simulate" not in real.stderr
    back = p.run("rollback")
    assert back.returncode == 0 and "rolled back from revision 2 to 1" in back.stdout, back.stderr


def _interrupt(
    p: Project, point: str, signum: int, *args: str, twice: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `up`, paused at the failpoint `point`; signal it there (and, with `twice`, again once the
    clean-up has reached the old revision's health wait)."""
    points = [point, "rollback-waiting"] if twice else [point]
    pauses = Pauses(p.root / f"failpoints-{uuid.uuid4().hex[:6]}", *points)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployctl", "up", "--simulate", *args],
        cwd=p.root,
        env={**os.environ, **pauses.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pauses.wait(point, proc)
    proc.send_signal(signum)
    if twice:
        pauses.wait("rollback-waiting", proc)
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


UPGRADE_ARGS = {
    "before-start": (),
    "image-build": (),
    "containers-created": (),
    "waiting-health": (),
    "rollback": ("--sim-fault", "never-healthy", "--timeout", "3"),
}


@pytest.fixture(scope="module")
def answering(tmp_path_factory: pytest.TempPathFactory, sim_image: str) -> Iterator[Project]:
    """One stack at revision 1 for every interrupted upgrade: each must leave it answering at revision 1
    (what the test checks), which is where the next one starts. One `up` in place of ten."""
    s = Stacks(tmp_path_factory.mktemp("interrupted"))
    p = s.new("s")
    assert _up(p).returncode == 0
    yield p
    s.cleanup()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", list(UPGRADE_ARGS))
def test_an_interrupted_upgrade_leaves_the_old_stack_answering(answering: Project, point: str, signum: int) -> None:
    p = answering
    assert p.run("health").returncode == 0 and _revision(p) == 1
    p.write(GOOD)
    done = _interrupt(p, point, signum, *UPGRADE_ARGS[point])
    print(f"\n{point} {signal.Signals(signum).name}: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "error: interrupted" in done.stderr
    assert p.run("health").returncode == 0
    assert _revision(p) == 1 and "8192" in (p.stack / "compose.yaml").read_text()


@pytest.mark.parametrize("point", ["image-build", "containers-created", "waiting-health"])
def test_an_interrupted_first_up_leaves_nothing_of_the_new_stack(stacks: Stacks, point: str) -> None:
    p = stacks.new("s")
    done = _interrupt(p, point, signal.SIGTERM)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert p.containers() == [] and p.networks() == []
    assert not (p.stack / "compose.yaml").exists()


def test_a_second_ctrl_c_stops_the_rollback_at_once(stacks: Stacks) -> None:
    p = stacks.new("s")
    assert _up(p).returncode == 0
    p.write(GOOD)
    done = _interrupt(p, "rollback", signal.SIGINT, *UPGRADE_ARGS["rollback"], twice=True)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert "again: stopped the clean-up at once" in done.stderr
    assert p.run("down").returncode == 0  # what is left is ours to remove


def test_open_bind_without_a_key_is_refused_unless_allowed(stacks: Stacks) -> None:
    p = stacks.new("s")
    p.spec.write_text(f"name: {p.name}\nserve:\n  bind: 0.0.0.0\n  port: {p.port}\nstack_dir: stack\n")
    refused = _up(p)
    assert refused.returncode == 2 and "--allow-open" in refused.stderr and p.containers() == []
    assert _up(p, "--allow-open").returncode == 0
    doctor = json.loads(deployctl("doctor", "--json", cwd=p.root).stdout)
    [check] = [c for c in doctor["checks"] if c["name"] == "exposure"]
    assert check["status"] == "FAIL" and f"0.0.0.0:{p.port}" in check["detail"]


def _image_id(ref: str) -> str:
    done = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return done.stdout.strip()


def test_a_broken_image_under_the_same_tag_is_rolled_back_to_the_image_that_ran(stacks: Stacks, sim_image: str) -> None:
    """A bundle upgrade re-tags the engine image; the good copy remembers the image id and takes it back."""
    from deployctl.images.build import DEBIAN_BASE

    p = stacks.new("s")
    assert _up(p).returncode == 0
    good_id = _image_id(sim_image)
    try:
        subprocess.run(["docker", "tag", DEBIAN_BASE, sim_image], check=True)  # no simulator in it: never starts
        p.write(GOOD)
        failed = _up(p, "--timeout", "8")
        assert failed.returncode == 1 and "rolled back to revision 1" in failed.stderr, failed.stderr
        assert _image_id(sim_image) == good_id
        assert p.run("health").returncode == 0
    finally:
        subprocess.run(["docker", "tag", good_id, sim_image], check=True)


def test_down_of_a_stack_rendered_but_never_started_says_what_is_true(stacks: Stacks) -> None:
    p = stacks.new("s")
    assert p.run("render", "--simulate").returncode == 0
    done = p.run("down")
    assert done.returncode == 0 and "was running (rendered, never started)" in done.stdout, done.stdout
    assert "stopped and removed" not in done.stdout
    assert json.loads(p.run("down", "--json").stdout)["stopped"] is False
