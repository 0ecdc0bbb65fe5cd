"""Adding an engine is its module plus one registry line: a toy third engine (tests/unit/toy_engine.py),
registered through `engines.register`, is planned, rendered for Compose and Helm, and simulated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from helpers import simserver

from deployctl import engines, models, planner, spec, targets
from deployctl import gpus as profiles
from deployctl.cli import cli
from deployctl.engines import dialects
from deployctl.errors import PlanRefused
from deployctl.ops import startup
from deployctl.probe import health
from deployctl.sim.config import from_args
from deployctl.targets import helm
from unit import toy_engine
from unit.test_helm import API_VERSIONS, KUBE_VERSIONS, kind, run_helm, template

PACKAGE = Path(__file__).parents[2] / "deployctl"
SPEC = "name: toy-stack\nengine: toy\nmodel:\n  preset: llama-3.1-8b-instruct-gptq\n"


@pytest.fixture(autouse=True)
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The registry as it was before the test comes back afterwards.
    monkeypatch.setattr(engines, "_REGISTERED", dict(engines._REGISTERED))
    engines.register(toy_engine.ENGINE)
    yield


def _plan() -> planner.Plan:
    return planner.plan(spec.parse(SPEC), models.preset("llama-3.1-8b-instruct-gptq"), profiles.host("rtx4090", 1))


def test_nothing_in_deployctl_names_the_toy() -> None:
    assert not [p for p in PACKAGE.rglob("*.py") if "toy" in p.read_text().lower()]


def test_the_toy_is_planned_under_its_own_rule_and_flags() -> None:
    p = _plan()
    assert "toy" in engines.names() and p.engine_name == "toy"
    e = p.engine
    assert (e.kind, e.image, e.container_port, e.dialect, e.api_key_env) == (
        "toy",
        toy_engine.DEFAULT_IMAGE,
        8000,
        "openai",
        "TOY_API_KEY",
    )
    assert e.args[:3] == ["/models/llama-3.1-8b-instruct-gptq", "--served-model-name", "llama-3.1-8b-instruct-gptq"]
    assert "--memory-share" in e.args and p.knobs["--memory-share"] == "0.85" and p.memory_fraction == 0.85
    assert p.limits.max_batch_prefill_tokens == 1024 and p.limits.max_concurrent_requests == 32
    # The KV cache is the toy rule's: its share of the card less weights, warm-up and runtime, in blocks of 32.
    b = p.gpus[0]
    room = int(0.85 * b.total) - b.weights - b.prefill_reserve - toy_engine.RUNTIME
    block = 32 * b.kv_cache // b.kv_tokens
    assert b.kv_tokens % 32 == 0 and b.runtime_reserve == toy_engine.RUNTIME
    assert b.kv_cache <= room < b.kv_cache + block
    assert e.security.user == "2000:2000" and e.start_budget_s == toy_engine.ENGINE.start_budget_s(b.weights)
    assert any("ToyServe 1.x's start-up rule" in r for r in p.reasons)


def test_up_reads_the_toys_own_start_up_line_against_its_plan() -> None:
    # ops/startup asks the plan's engine to read its log: the toy's words, nothing named in deployctl.
    p = _plan()
    short = p.limits.kv_cache_tokens // 2
    report = startup.compare(p, f"toyserve: loading\n{toy_engine.STARTUP_LINE}{short}\nready\n", revision=1)
    assert report.actual_kv_tokens == short and report.short
    assert report.engine_line == f"{toy_engine.STARTUP_LINE}{short}"
    assert report.warning() is not None and f"{short:,} KV-cache tokens" in (report.warning() or "")
    assert startup.compare(p, "toyserve: loading\n", revision=1).actual_kv_tokens is None


def test_the_toy_refuses_what_it_cannot_load() -> None:
    awq = models.preset("llama-3.1-8b-instruct-gptq")
    awq = awq.model_copy(update={"quantization": awq.quantization.model_copy(update={"method": "awq"})})
    # Does not fit (exit 4), and the refusal names the engines that do load it.
    with pytest.raises(PlanRefused, match=r"does not load in ToyServe 1\.x: ToyServe loads no AWQ checkpoint") as err:
        planner.plan(spec.parse(SPEC), awq, profiles.host("rtx4090", 1))
    assert "--engine tgi" in (err.value.hint or "") and "--engine vllm" in (err.value.hint or "")


def test_the_cli_takes_the_toy_from_the_registry(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["plan", "--engine", "toy", "--gpu-model", "rtx4090", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["engine"]["kind"] == "toy"
    unknown = CliRunner().invoke(cli, ["plan", "--engine", "nosuch", "--gpu-model", "rtx4090"])
    assert unknown.exit_code == 2 and "allowed: tgi, vllm, toy" in unknown.stderr


def test_the_toy_renders_for_compose() -> None:
    files = targets.render(_plan(), "compose", targets.RenderOptions())
    svc = yaml.safe_load(files["compose.yaml"])["services"]["engine"]
    assert svc["image"] == toy_engine.DEFAULT_IMAGE and svc["command"][0] == "/models/llama-3.1-8b-instruct-gptq"
    assert svc["environment"]["TOY_OFFLINE"] == "1" and svc["user"] == "2000:2000"
    assert svc["labels"]["ai.deployctl.engine"] == "toy"
    assert "python3 -c" in svc["healthcheck"]["test"][1] and "127.0.0.1:8000/health" in svc["healthcheck"]["test"][1]


def test_the_toy_renders_a_chart_that_lints_and_validates(tmp_path: Path) -> None:
    chart_dir = helm.write_chart(targets.render(_plan(), "helm", targets.RenderOptions()), tmp_path / "chart")
    lint = run_helm("lint", "--strict", str(chart_dir))
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    docs = template(chart_dir)
    assert {d["apiVersion"] for d in docs} <= API_VERSIONS
    for version in KUBE_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == toy_engine.DEFAULT_IMAGE and "--memory-share" in container["args"]
    assert pod["securityContext"]["runAsUser"] == 2000
    assert "# ToyServe runs as its own uid (2000)." in (chart_dir / "values.yaml").read_text()


def test_the_simulator_stands_in_for_the_toy_and_answers_as_planned() -> None:
    p = _plan()
    svc = yaml.safe_load(targets.render(p, "compose", targets.RenderOptions(simulate=True))["compose.yaml"])[
        "services"
    ]["engine"]
    env = {k: str(v) for k, v in svc["environment"].items()}
    assert env["SIM_ENGINE"] == dialects.OPENAI.simulated_by
    cfg = from_args([str(a) for a in svc["command"]], {**env, "SIM_LOAD_SECONDS": "0"})
    assert (cfg.model_id, cfg.max_total_tokens, cfg.port) == (p.served_name, p.limits.max_total_tokens, 8000)
    with simserver.running(cfg) as url:
        report = health.check(url, health.Expected.from_plan(p, dialects.OPENAI), dialect=dialects.OPENAI)
    assert report.status == "healthy", report.checks
    assert "matches the plan" in report.checks[1].detail and report.tokens > 0


def test_the_toy_chart_keeps_its_key_out_of_plain_env(tmp_path: Path) -> None:
    chart_dir = helm.write_chart(targets.render(_plan(), "helm", targets.RenderOptions()), tmp_path / "chart")
    refused = run_helm("template", "rel", str(chart_dir), "--set", "engine.env.TOY_API_KEY=plain", check=False)
    assert refused.returncode != 0 and "TOY_API_KEY" in refused.stderr


def test_monitoring_of_an_engine_with_no_metric_names(tmp_path: Path) -> None:
    """The toy publishes no METRICS: its chart renders with monitoring on and the operator's API, without rules
    or dashboards (never an empty PrometheusRule), and its Compose profile is refused in one line."""
    from deployctl.errors import InputError

    chart_dir = helm.write_chart(targets.render(_plan(), "helm", targets.RenderOptions()), tmp_path / "chart")
    assert not (chart_dir / "monitoring").exists()
    out = run_helm(
        "template", "rel", str(chart_dir), "--set", "monitoring.enabled=true",
        "--api-versions", "monitoring.coreos.com/v1",
    ).stdout  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert "ServiceMonitor" in kinds and "PrometheusRule" not in kinds, kinds
    with pytest.raises(InputError, match="no metric names known for engine 'toy'"):
        targets.render(_plan(), "compose", targets.RenderOptions(monitoring=spec.Monitoring(enabled=True)))
