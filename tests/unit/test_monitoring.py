"""Monitoring: the names the rules and dashboards read exist where they are read, the GPU exporter's readings,
the dashboards' shape, the thresholds' derivation, `deployctl monitor` and the Compose profile."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from helpers import simserver
from helpers.fake_nvml import two_4090s
from helpers.monitoring import MODEL_PATH, limits, plan, render_compose
from helpers.promtools import tool

from deployctl import spec
from deployctl.cli import cli
from deployctl.engines import tgi, vllm
from deployctl.errors import InputError
from deployctl.gpus.gpu import THROTTLE_REASONS
from deployctl.monitoring import dashboards, engines, exporter, gpu, rules, thresholds
from deployctl.monitoring import render as monitoring
from deployctl.sim import metrics as sim_metrics
from deployctl.sim.config import SimConfig

NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
RECORDED = {rules.KV_RECORD, rules.WAITING_RECORD, *(rules.ERRORS_RECORD + w for w in ("5m", "1h"))}


def used_names(exprs: list[str]) -> set[str]:
    """Give every series name the expressions select (each is written name{matchers})."""
    return {n for e in exprs for n in NAME.findall(e)}


def all_exprs(t: thresholds.Thresholds) -> list[str]:
    rule_file = rules.rule_file(t)
    exprs = [r["expr"] for g in rule_file["groups"] for r in g["rules"]]
    return exprs + [q for d in dashboards.dashboards(t) for q in d.queries()]


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scraped(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Give /metrics as {series name: {labels: value}}, names as Prometheus stores them (prometheus_client's
    own parser would add `_total` to a counter TGI names without it)."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            out.setdefault(m.group(1), {})[labels] = float(m.group(3))
    return out


# -- the names --------------------------------------------------------------------------------------------
def test_the_simulator_serves_the_engines_bucket_edges_and_finish_reasons() -> None:
    # The simulator's image carries deployctl/sim/ alone: its copies must stay the engines' own.
    assert vllm.METRICS.ttft.buckets == sim_metrics._VLLM_TTFT
    assert vllm.METRICS.itl.buckets == sim_metrics._VLLM_ITL
    assert vllm.METRICS.e2e.buckets == vllm.METRICS.queue.buckets == sim_metrics._VLLM_REQUEST
    assert tgi.METRICS.e2e.buckets == sim_metrics._TGI_DURATION
    assert vllm.VLLM_FINISHED_REASONS == sim_metrics.VLLM_FINISHED
    # TGI's geometric series, as router/src/server.rs states it: 0.0001 x 1.5^k, k = 1..35.
    assert len(tgi.TGI_DURATION_BUCKETS) == 35
    assert tgi.TGI_DURATION_BUCKETS[0] == pytest.approx(0.00015)
    assert tgi.TGI_DURATION_BUCKETS[-1] == pytest.approx(0.0001 * 1.5**35)


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_every_engine_series_a_rule_or_panel_reads_is_on_the_simulators_metrics(engine: str) -> None:
    t = limits(engine)
    cfg = SimConfig(engine=engine, kv_tokens_env=1000, load_seconds=0)
    with simserver.running(cfg) as url:
        served = set(scraped(url))
    engine_names = {n for n in used_names(all_exprs(t)) if not n.startswith(("deployctl", "up", "ALERTS"))}
    assert engine_names, "no engine series found in the expressions"
    # TGI's router makes tgi_request_failure at the first failure (metrics-rs); the rules count it 0 till then.
    later = {"tgi_request_failure"} if engine == "tgi" else set()
    missing = sorted(engine_names - served - later)
    assert not missing, f"the simulator's /metrics lacks {missing}"


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_every_name_in_the_rules_and_dashboards_is_known(engine: str) -> None:
    """Each is the engine's (with its source), the GPU exporter's, a recording rule's, or Prometheus's own."""
    t = limits(engine)
    m = engines.for_engine(engine)
    known = {f.name for f in m.families()}
    known |= {f"{f.name}_bucket" for f in m.families() if f.kind == "histogram"}
    known |= {f"{f.name}_count" for f in m.families() if f.kind == "histogram"}
    exporter_names = {v for k, v in vars(gpu).items() if k.isupper() and isinstance(v, str) and "_" in v}
    recorded = RECORDED | {
        rules.record_name(k, w) for k in ("ttft", "itl") for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    }
    unknown = used_names(all_exprs(t)) - known - exporter_names - recorded - {"up", "ALERTS"}
    assert not unknown, unknown
    assert all(f.source for f in m.families())


def test_the_le_matcher_takes_each_library_s_spelling() -> None:
    assert re.fullmatch(engines.le_matcher(1.0), "1.0") and re.fullmatch(engines.le_matcher(1.0), "1")
    assert re.fullmatch(engines.le_matcher(0.5), "0.5") and not re.fullmatch(engines.le_matcher(0.5), "0.50")
    edge = tgi.TGI_DURATION_BUCKETS[13]
    assert re.fullmatch(engines.le_matcher(edge), repr(edge))


def test_an_slo_is_counted_at_the_engine_s_edge_at_or_below_it() -> None:
    assert engines.bucket_at_or_below(vllm.METRICS.ttft, 0.5) == 0.5
    assert engines.bucket_at_or_below(vllm.METRICS.ttft, 0.6) == 0.5  # stricter, never looser
    assert engines.bucket_at_or_below(vllm.METRICS.itl, 0.05) == 0.05
    assert engines.bucket_at_or_below(tgi.METRICS.ttft, 0.5) < 0.5


# -- the simulator's KV usage --------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_the_simulator_s_kv_usage_follows_what_in_flight_requests_hold(engine: str) -> None:
    cfg = SimConfig(engine=engine, kv_tokens_env=100, load_seconds=0)
    cfg.latency = cfg.latency.__class__(ttft_base_ms=5, prefill_tokens_per_s=1e9, itl_ms=200, itl_per_stream_ms=0)
    with simserver.running(cfg) as url:
        before = _kv(scraped(url), engine)
        if engine == "vllm":
            body = {"prompt": "one two three four", "max_tokens": 200, "stream": True}
            path = "/v1/completions"
        else:
            body = {"inputs": "one two three four", "parameters": {"max_new_tokens": 200}}
            path = "/generate_stream"
        req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.readline()  # the first token is out: the request holds its share now
            during = _kv(scraped(url), engine)
    assert before == 0
    assert during == 1.0  # 4 prompt tokens + room for 200 is more than a pool of 100


def _kv(samples: dict[str, Any], engine: str) -> float:
    if engine == "vllm":
        return float(next(iter(samples["vllm:kv_cache_usage_perc"].values())))
    used = next(iter(samples["tgi_batch_current_max_tokens"].values()))
    return float(used / next(iter(samples["tgi_batch_max_total_tokens"].values())))


# -- the GPU exporter ----------------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Any:
    """The exporter on a free loopback port over two fake RTX 4090s; gives (url, boards)."""
    fake = two_4090s()
    fake.boards[0].clock_event_reasons = THROTTLE_REASONS["sw_power_cap"] | THROTTLE_REASONS["hw_thermal_slowdown"]
    fake.boards[0].energy_mj = 123_456
    fake.boards[1].slowdown_temperature = None  # a board that does not say
    stop, box = threading.Event(), {}
    started = threading.Event()

    def ready(s: exporter.Serving) -> None:
        box["url"] = s.url.removesuffix("/metrics")
        started.set()

    thread = threading.Thread(
        target=exporter.serve,
        kwargs={"port": 0, "paths": (tmp_path,), "nvml_lib": fake, "ready": ready, "stop": stop},
        daemon=True,
    )
    thread.start()
    assert started.wait(10)
    yield box["url"], fake
    stop.set()
    thread.join(10)


def _one(samples: dict[str, Any], name: str, **labels: str) -> float:
    found = [v for k, v in samples[name].items() if labels.items() <= dict(k).items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return float(found[0])


def test_the_exporter_serves_nvml_in_base_units(served: Any, tmp_path: Path) -> None:
    url, fake = served
    s = scraped(url)
    b0 = {"gpu": "0", "uuid": fake.boards[0].uuid}
    assert _one(s, gpu.POWER, **b0) == 31.25  # 31250 mW
    assert _one(s, gpu.POWER_LIMIT, **b0) == 450.0
    assert (_one(s, gpu.POWER_MIN, **b0), _one(s, gpu.POWER_MAX, **b0)) == (150.0, 600.0)
    assert _one(s, gpu.SM_CLOCK, **b0) == 210e6 and _one(s, gpu.MEM_CLOCK, **b0) == 405e6
    assert _one(s, gpu.ENERGY, **b0) == pytest.approx(123.456)  # mJ -> J
    assert _one(s, gpu.MEMORY_TOTAL, **b0) == 24564 * 2**20
    assert _one(s, gpu.TEMPERATURE, **b0) == 41 and _one(s, gpu.SLOWDOWN, **b0) == 87
    assert _one(s, gpu.THROTTLE, reason="sw_power_cap", **b0) == 1
    assert _one(s, gpu.THROTTLE, reason="hw_thermal_slowdown", **b0) == 1
    assert _one(s, gpu.THROTTLE, reason="gpu_idle", **b0) == 0
    # The board that does not report a slowdown temperature has no such series (not a made-up one).
    assert all(dict(k)["gpu"] != "1" for k in s[gpu.SLOWDOWN])
    assert _one(s, gpu.FS_SIZE, path=str(tmp_path)) > 0
    assert _one(s, gpu.FS_AVAIL, path=str(tmp_path)) > 0
    assert {k: v for k, v in s[gpu.UP].items()} and all(v == 1 for v in s[gpu.UP].values())


def test_the_exporter_reads_afresh_and_reports_a_lost_gpu_while_the_other_goes_on(served: Any) -> None:
    url, fake = served
    fake.boards[0].draw_mw = 301_000
    fake.boards[1].lost = True
    s = scraped(url)
    assert _one(s, gpu.POWER, gpu="0") == 301.0
    assert _one(s, gpu.UP, gpu="1") == 0 and _one(s, gpu.UP, gpu="0") == 1
    assert not [k for k in s[gpu.POWER] if dict(k)["gpu"] == "1"]


def test_the_exporter_is_read_only(served: Any) -> None:
    url, fake = served
    for _ in range(3):
        scraped(url)
    assert all(b.sets == [] for b in fake.boards)
    assert all(b.persistence == 0 for b in fake.boards)


def test_the_exporter_listens_on_loopback_by_default(served: Any) -> None:
    url, _ = served
    assert url.startswith("http://127.0.0.1:")


def test_the_exporter_without_a_driver_exits_3_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.fake_nvml import no_driver

    from deployctl.hardware import inventory

    monkeypatch.setattr(inventory, "NVML_LIB", no_driver())
    result = CliRunner().invoke(cli, ["exporter", "--once"])
    assert result.exit_code == 3
    assert "NVIDIA driver not found" in result.output and "Traceback" not in result.output


def test_the_exporter_refuses_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        exporter.check_paths((tmp_path / "missing",))


# -- thresholds ---------------------------------------------------------------------------------------------
def test_kv_high_comes_from_the_plan_s_pool_and_longest_request() -> None:
    p = plan("vllm")
    pool, longest = p.limits.kv_cache_tokens, p.limits.max_total_tokens
    value = thresholds.kv_high(p).value
    # 70B on two 4090s: one 8192-token request is most of the pool: held at the 80% floor, and said so.
    assert 1 - longest / pool < 0.80 and value == 0.80
    assert "held at 80%" in thresholds.kv_high(p).reason
    small = plan("vllm", gpus=1)
    room = 1 - small.limits.max_total_tokens / small.limits.kv_cache_tokens
    assert thresholds.kv_high(small).value == pytest.approx(min(0.95, max(0.80, room)), abs=1e-3)


def test_gpu_memory_threshold_leaves_half_the_engine_s_reserve() -> None:
    p = plan("vllm")
    g = p.gpus[0]
    expected = (g.total - g.engine_reserve / 2) / g.total
    assert thresholds.gpu_memory(p).value == pytest.approx(min(0.99, max(0.90, expected)), abs=1e-3)


def test_disk_threshold_is_the_model_s_size_and_needs_a_model_folder() -> None:
    t = limits("vllm")
    assert t.disk_free_bytes is not None and t.disk_free_bytes.value == plan("vllm").model.weight_bytes
    assert t.model_path == MODEL_PATH


@pytest.mark.parametrize("bad", [{"ttft_ms": 0}, {"itl_ms": -5}, {"percentile": "p42"}])
def test_a_bad_slo_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        thresholds.Slo(**bad)


def test_thresholds_survive_their_json() -> None:
    t = limits("tgi")
    assert monitoring.thresholds_from_json(monitoring.thresholds_json(t)) == t


# -- dashboards ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_dashboards_are_grafana_json_from_the_description(engine: str) -> None:
    t = limits(engine)
    files = dashboards.dashboard_files(t)
    assert files == dashboards.dashboard_files(t)  # the same bytes every time
    uids = set()
    for d in dashboards.dashboards(t):
        doc = json.loads(files[f"{d.uid}.json"])
        uids.add(doc["uid"])
        assert [p["title"] for p in doc["panels"]] == [p.title for p in d.panels]
        for p in doc["panels"]:
            assert p["targets"] and all(x["expr"] and x["datasource"]["uid"] == "${datasource}" for x in p["targets"])
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    assert len(uids) == 3
    titles = {p.title for d in dashboards.dashboards(t) for p in d.panels}
    assert {"KV cache usage", "Power draw against the limit", "Energy per generated token"} <= titles
    assert ("Preemptions per second" in titles) == (engine == "vllm")


# -- deployctl monitor ---------------------------------------------------------------------------------------
def _stack(tmp_path: Path, engine: str = "vllm", simulate: bool = True) -> Path:
    from deployctl.stackdir import write_stack

    files = render_compose(plan(engine), simulate=simulate, api_key="k")
    return write_stack(files, tmp_path / "stack", revision=1)


def test_monitor_writes_a_configuration_promtool_accepts(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    out = tmp_path / "mon"
    args = ["monitor", "--stack-dir", str(stack), "--slo-ttft", "500", "--slo-itl", "50", "-o", str(out), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["engine_targets"] == ["127.0.0.1:8080"] and doc["gpu_targets"] == []  # simulated: no GPUs
    assert "LLMTTFTSLOBurn" in doc["alerts"] and "LLMGpuHot" not in doc["alerts"]
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(out / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_monitor_with_an_exporter_adds_the_gpu_job_rules_and_dashboard(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    out = tmp_path / "mon"
    result = CliRunner().invoke(
        cli, ["monitor", "--stack-dir", str(stack), "--exporter", "127.0.0.1:9555", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["deployctl-mon-gpu"]["static_configs"][0]["targets"] == ["127.0.0.1:9555"]
    assert jobs["deployctl-mon-gpu"]["static_configs"][0]["labels"] == {
        "deployctl_stack": "mon",
        "deployctl_role": "gpu",
    }
    assert (out / "dashboard-gpus.json").is_file()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--exporter", "nohost"], 2, "is not HOST:PORT"),
        (["--slo-ttft", "-3"], 2, "--slo-ttft"),
        (["--stack-dir", "nothing-here"], 5, "no stack"),
    ],
)
def test_monitor_refuses_in_one_line(tmp_path: Path, args: list[str], code: int, words: str) -> None:
    stack = _stack(tmp_path)
    full = ["monitor", "--stack-dir", str(stack), "-o", str(tmp_path / "m"), *args]
    result = CliRunner().invoke(cli, full)
    assert result.exit_code == code, result.output
    assert words in result.output and "Traceback" not in result.output


# -- the Compose profile ----------------------------------------------------------------------------------------
def test_no_monitoring_block_renders_the_stack_as_before() -> None:
    p = plan("vllm")
    assert render_compose(p, api_key="k") == render_compose(p, api_key="k", monitoring=spec.Monitoring())


def test_the_monitoring_profile_is_loopback_named_volumes_and_asked_for() -> None:
    files = render_compose(plan("vllm"), api_key="k", monitoring=spec.Monitoring(enabled=True, slo_ttft_ms=500))
    doc = yaml.safe_load(files["compose.yaml"])
    services = doc["services"]
    assert services["engine"].get("profiles") is None  # the engine starts with `up`; the rest only when asked
    for name in ("prometheus", "grafana", "gpu-exporter"):
        assert services[name]["profiles"] == ["monitoring"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert "ports" not in services["gpu-exporter"]  # reached by Prometheus on the stack's network only
    assert set(doc["volumes"]) == {"prometheus-data", "grafana-data"}
    assert services["gpu-exporter"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["utility"]
    assert {"prometheus.yml", "rules.yml", "thresholds.json", "dashboard-slo.json"} <= set(files)
    scrape_config = yaml.safe_load(files["prometheus.yml"])
    assert scrape_config["scrape_configs"][0]["static_configs"][0]["targets"] == ["engine:8000"]


def test_opening_monitoring_beyond_loopback_needs_the_stack_s_key() -> None:
    with pytest.raises(InputError, match="API key"):
        render_compose(plan("vllm"), monitoring=spec.Monitoring(enabled=True, bind="0.0.0.0"))
    p = plan("vllm").model_copy(update={"api_key": True})
    files = render_compose(p, api_key="k", monitoring=spec.Monitoring(enabled=True, bind="0.0.0.0"))
    grafana = yaml.safe_load(files["compose.yaml"])["services"]["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "DEPLOYCTL_API_KEY" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


def test_a_simulated_stack_s_profile_has_no_gpu_exporter() -> None:
    files = render_compose(plan("tgi"), simulate=True, api_key="k", monitoring=spec.Monitoring(enabled=True))
    doc = yaml.safe_load(files["compose.yaml"])
    assert "gpu-exporter" not in doc["services"] and "dashboard-gpus.json" not in files


# -- health and status: the alerts' facts from one reading ---------------------------------------------------------
VLLM_PAGE = """\
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.99
vllm:num_requests_waiting{model_name="m",engine="0"} 3.0
vllm:num_requests_running{model_name="m",engine="0"} 8.0
vllm:num_preemptions_total{model_name="m",engine="0"} 4.0
vllm:request_success_total{model_name="m",engine="0",finished_reason="stop"} 95.0
vllm:request_success_total{model_name="m",engine="0",finished_reason="length"} 3.0
vllm:request_success_total{model_name="m",engine="0",finished_reason="error"} 2.0
"""


def test_one_reading_of_vllm_gives_the_alerts_verdicts() -> None:
    from deployctl.monitoring.facts import judge

    facts = judge(VLLM_PAGE, limits("vllm"))
    assert (facts.kv_cache_usage, facts.requests_waiting, facts.requests_running) == (0.99, 3.0, 8.0)
    assert (facts.requests_finished, facts.requests_failed, facts.preemptions) == (100.0, 2.0, 4.0)
    assert facts.error_ratio == 0.02
    firing = {v.alert for v in facts.verdicts if v.firing}
    assert firing == {"LLMKVCacheFull", "LLMKVCacheHigh", "LLMErrorRateHigh"} and facts.degraded


def test_one_reading_of_tgi_counts_only_the_server_s_failures() -> None:
    from deployctl.monitoring.facts import judge

    page = (
        "tgi_batch_current_max_tokens 5000\ntgi_batch_max_total_tokens 10000\ntgi_queue_size 0\n"
        "tgi_batch_current_size 4\ntgi_request_count 200\n"
        'tgi_request_failure{err="validation"} 50\ntgi_request_failure{err="overloaded"} 1\n'
    )
    facts = judge(page, limits("tgi"))
    assert facts.kv_cache_usage == 0.5 and facts.requests_failed == 1 and facts.error_ratio == 0.005
    assert not facts.degraded and not any(v.firing for v in facts.verdicts)


def _served_stack(tmp_path: Path, port: int) -> Path:
    from deployctl.stackdir import write_stack

    p = plan("vllm").model_copy(update={"port": port})
    return write_stack(render_compose(p, simulate=True), tmp_path / "stack", revision=1)


def test_health_reports_the_metrics_and_a_full_kv_cache_degrades_it(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = plan("vllm")
    cfg = SimConfig(
        engine="vllm",
        model_id=p.served_name,
        max_total_tokens=p.limits.max_total_tokens,
        kv_tokens_env=100,
        load_seconds=0,
    )
    cfg.port = port
    stack = _served_stack(tmp_path, port)
    with simserver.running(cfg, port) as url:
        calm = CliRunner().invoke(cli, ["health", "--stack-dir", str(stack), "--json"])
        assert calm.exit_code == 0, calm.output
        doc = json.loads(calm.output)
        assert doc["metrics"]["kv_cache_usage"] == 0 and doc["metrics"]["engine"] == "vllm"
        # One long request holds more than the pool of 100 tokens: the KV-full verdict fires.
        body = {"prompt": "one two three", "max_tokens": 500, "stream": True, "model": p.served_name}
        req = urllib.request.Request(
            f"{url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.readline()
            full = CliRunner().invoke(cli, ["health", "--stack-dir", str(stack), "--json"])
    assert full.exit_code == 1, full.output
    doc = json.loads(full.output)
    firing = {v["alert"] for v in doc["metrics"]["verdicts"] if v["firing"]}
    assert "LLMKVCacheFull" in firing and doc["status"] == "degraded"
    (check,) = [c for c in doc["checks"] if c["name"] == "metrics"]
    assert not check["ok"] and "KV cache 100%" in check["detail"]


def test_a_bundle_carries_the_profile_s_images_only_when_the_spec_turns_it_on() -> None:
    on = spec.Monitoring(enabled=True)
    assert monitoring.profile_images(spec.Monitoring(), simulate=False) == []
    assert monitoring.profile_images(on, simulate=False) == [
        monitoring.PROMETHEUS_IMAGE,
        monitoring.GRAFANA_IMAGE,
        monitoring.EXPORTER_IMAGE,
    ]
    assert monitoring.EXPORTER_IMAGE not in monitoring.profile_images(on, simulate=True)  # no GPUs to read


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
@pytest.mark.parametrize("simulate", [False, True], ids=["engine", "simulator"])
def test_promtool_accepts_the_compose_profile_s_configuration_and_rules(
    tmp_path: Path, engine: str, simulate: bool
) -> None:
    m = spec.Monitoring(enabled=True, slo_ttft_ms=250, slo_itl_ms=75, slo_percentile="p90")
    files = render_compose(plan(engine), simulate=simulate, api_key="k", monitoring=m)
    for name in ("prometheus.yml", "rules.yml"):
        (tmp_path / name).write_bytes(files[name])
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 1 rule files found" in check.stdout + check.stderr


def test_the_exporter_command_serves_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    """`deployctl exporter --json` says where it serves once it listens; SIGTERM stops it cleanly."""
    import os
    import signal
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tests = Path(__file__).parents[1]
    code = (
        f"import sys; sys.path.insert(0, {str(tests)!r})\n"
        "from helpers.fake_nvml import two_4090s\n"
        "from deployctl.hardware import inventory\n"
        "inventory.NVML_LIB = two_4090s()\n"
        "from deployctl.cli import main\n"
        f"sys.argv = ['deployctl', 'exporter', '--port', '{port}', '--json']\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())  # written once the port is bound
        assert ready == {"serving": f"http://127.0.0.1:{port}/metrics", "gpus": 2}
        assert gpu.POWER in urllib.request.urlopen(ready["serving"], timeout=5).read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
