"""The Docker Compose target: a Workload as compose.yaml, .env, plan.json and stack.json (deterministic bytes),
run on this host through `docker compose` (deployctl/docker/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployctl import docker, templating
from deployctl.errors import InputError
from deployctl.stackdir import StackInfo
from deployctl.targets.base import RenderContext
from deployctl.targets.workload import Workload, endpoint

if TYPE_CHECKING:
    from deployctl.plan import Plan
    from deployctl.spec import Monitoring

# The in-container check, by what the engine's image carries (the simulator's image has both).
HEALTH_COMMANDS = {
    "curl": "curl -fsS -o /dev/null http://127.0.0.1:{port}{path} || exit 1",
    "python3": "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)\" || exit 1",
}
FILES = ("compose.yaml", ".env", "plan.json", "stack.json")
MONITORING_PROFILE = "monitoring"
PROFILES = (MONITORING_PROFILE,)  # every Compose profile a rendered stack may have (`down` removes them too)


def _escape(value: str) -> str:
    return value.replace("$", "$$")  # compose interpolates $VAR in the file


def _port_mapping(w: Workload) -> str:
    bind = f"[{w.bind}]" if ":" in w.bind else w.bind
    return f"{bind}:{w.host_port}:{w.container_port}"


def variables(w: Workload, owner_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Give the values the templates are rendered from, in Compose's words; all decisions are made here."""
    return {
        "version": w.version,
        "plan_hash": w.plan_hash,
        "simulate": w.simulate,
        "project": w.name,
        "service": w.service,
        "engine": w.engine,
        "image": w.image,
        "args": [_escape(a) for a in w.args],
        "env": [(k, _escape(v)) for k, v in w.env],
        "secrets": [{"env": s.env, "key": s.key, "value": s.value} for s in w.secrets],
        "port_mapping": _port_mapping(w),
        "mounts": [{"source": _escape(m.source), "target": m.target, "read_only": m.read_only} for m in w.mounts],
        "shm_size": w.shm_size,
        "health_command": HEALTH_COMMANDS[w.probe.tool].format(port=w.probe.port, path=w.probe.path),
        "probe": w.probe,
        "stop_grace": w.stop_grace_s,
        "no_new_privileges": w.no_new_privileges,
        "security": w.security,
        "gpu_device_ids": list(w.gpu_ids) or None,
        "owner_labels": [(k, _escape(v)) for k, v in sorted((owner_labels or {}).items())],
    }


class Compose:
    """The Compose target: a stack directory's files, run as one compose project (docker/compose.py)."""

    name = "compose"

    def render(self, context: RenderContext) -> dict[str, bytes]:
        """Give the stack's files, byte for byte; the same context always gives the same bytes.

        The context's `labels` go on the container as they are (ownership: the stack dir and spec it runs from).
        With the options' `monitoring` enabled, the stack also gets its `monitoring` profile (Prometheus,
        Grafana, the GPU exporter) and their files; a profile starts only when asked for (`--profile monitoring`).
        """
        plan, w, options = context.plan, context.workload, context.options
        if plan.api_key and not context.key_rendered:
            raise InputError("the spec asks for an API key but none was resolved")
        api_key = options.api_key
        if api_key is not None and any(c in api_key for c in "'\n\r\\"):
            raise InputError("the API key holds a quote, backslash or newline", "use letters, digits and -_.~+/=")
        ctx = variables(w, options.labels)
        info = StackInfo(
            project=w.name,
            service=w.service,
            endpoint=endpoint(plan),
            simulate=options.simulate,
            plan_hash=w.plan_hash,
            load_timeout_s=w.probe.start_budget_s,
        )
        extra: dict[str, bytes] = {}
        ctx["monitoring"] = None
        m = options.monitoring
        if m is not None and m.enabled:
            ctx["monitoring"], extra = monitoring_profile(plan, w, m, simulate=options.simulate)
        return {
            **extra,
            "compose.yaml": templating.render("compose.yaml.j2", **ctx).encode(),
            ".env": templating.render("env.j2", **ctx).encode(),
            "plan.json": plan.canonical_json().encode(),
            "stack.json": info.to_json(),
        }

    def up(self, place: docker.ComposeProject) -> None:
        place.up()

    def status(self, place: docker.ComposeProject) -> list[docker.ServiceState]:
        return place.services()

    def down(self, place: docker.ComposeProject) -> list[str]:
        place.down(profiles=PROFILES)  # a plain `down` leaves a running profile's containers
        return [s.container for s in place.services()] + place.networks()


COMPOSE = Compose()


def monitoring_profile(
    plan: Plan, w: Workload, m: Monitoring, *, simulate: bool
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Give the template's values for the monitoring profile and its files (rules, dashboards, provisioning)."""
    import ipaddress

    from deployctl.monitoring import render as monitoring
    from deployctl.monitoring import scrape, thresholds
    from deployctl.monitoring.gpu import EXPORTER_PORT

    opened = not ipaddress.ip_address(m.bind).is_loopback
    if opened and not plan.api_key:
        raise InputError(
            f"monitoring.bind {m.bind} opens Grafana beyond this host, and the stack has no API key to guard it",
            "set serve.api_key_env (Grafana's admin password is the stack's key), or keep monitoring.bind 127.0.0.1",
        )
    with_gpus = m.gpu_exporter and not simulate and bool(w.gpu_ids)
    where = monitoring.Where(
        targets=scrape.Targets(
            engine=(f"{w.service}:{w.container_port}",),
            gpu=(f"gpu-exporter:{EXPORTER_PORT}",) if with_gpus else (),
        ),
        prometheus_url="http://prometheus:9090",
        with_gpus=with_gpus,
    )
    slo = thresholds.Slo(m.slo_ttft_ms, m.slo_itl_ms, m.slo_percentile)
    files = monitoring.files(thresholds.from_plan(plan, slo), where)
    bind = f"[{m.bind}]" if ":" in m.bind else m.bind
    values = {
        "profile": MONITORING_PROFILE,
        "prometheus_image": monitoring.PROMETHEUS_IMAGE,
        "grafana_image": monitoring.GRAFANA_IMAGE,
        "exporter_image": monitoring.EXPORTER_IMAGE,
        "prometheus_port": f"{bind}:{m.prometheus_port}:9090",
        "grafana_port": f"{bind}:{m.grafana_port}:3000",
        "anonymous": not opened,  # a loopback-only Grafana lets this host's users look without a login
        "dashboards": sorted(n for n in files if n.startswith("dashboard-")),
        "dashboards_dir": monitoring.DASHBOARDS_IN_GRAFANA,
        "with_gpus": with_gpus,
        "exporter_port": EXPORTER_PORT,
        "model_path": _escape(plan.model.path) if plan.model.path and with_gpus else None,
    }
    return values, files
