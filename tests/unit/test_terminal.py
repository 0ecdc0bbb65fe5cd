"""terminal.shown: the one function for text from outside (a file, a bundle, a model, the network) on a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from deployctl.cli import cli
from deployctl.terminal import shown


def test_controls_and_bidi_characters_are_escaped_and_printable_text_is_kept() -> None:
    assert shown("tiny-llama é 模型") == "tiny-llama é 模型"
    assert shown("a\x1b[2Jb", limit=None) == "a\\x1b[2Jb"
    assert shown("ok\rVERIFIED", limit=None) == "ok\\x0dVERIFIED"
    assert shown("abc\u202egpj.exe", limit=None) == "abc\\u202egpj.exe"  # right-to-left override
    assert shown("x\u200by\u2028z\U000e0001", limit=None) == "x\\u200by\\u2028z\\U000e0001"
    assert shown("a" * 100) == "a" * 57 + "..."


@given(st.text(max_size=200))
def test_whatever_comes_in_goes_out_as_one_printable_line(text: str) -> None:
    out = shown(text, limit=None)
    assert out.isprintable() and "\x1b" not in out and "\n" not in out
    assert shown(text) == shown(text)  # deterministic


def test_an_error_line_from_a_hostile_path_is_escaped(tmp_path: Path) -> None:
    bad = tmp_path / "x\x1b]0;pwned\x07\u202e"
    result = CliRunner().invoke(cli, ["bundle", "verify", str(bad), "--insecure-skip-signature"])
    assert result.exit_code == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "\\x1b]0;pwned\\x07\\u202e" in error[0]
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr


def test_the_k8s_status_table_escapes_what_the_cluster_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployctl.kube.resources import PodState
    from deployctl.ops import kubernetes
    from deployctl.targets.helm import ReleaseStatus

    pod = PodState("llm-a\x1b[2J", "Pending", False, 0, "gpu[red]1", "image x:1\r\u202eOK is not present")
    st = ReleaseStatus(
        release="llm",
        namespace="llm",
        revision=1,
        plan_hash="abc",
        replicas=1,
        ready=0,
        service="llm",
        cluster_ip="10.0.0.7",
        port=8080,
        url="http://llm.llm.svc:8080",
        port_forward="",
        pods=[pod],
        helm_status="deployed",
        chart="llm-0.9.0",
        app_version="3.3.7",
        endpoints=0,
    )
    monkeypatch.setattr(kubernetes, "status", lambda cluster, release: st)
    result = CliRunner().invoke(cli, ["k8s", "status", "--release", "llm", "-n", "llm"])
    assert result.exit_code == 1  # not Ready
    assert "llm-a\\x1b[2J" in result.stdout and "gpu[red]1" in result.stdout  # escaped, and not read as markup
    assert "\\x0d\\u202eOK" in result.stdout
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\u202e" not in result.stdout
