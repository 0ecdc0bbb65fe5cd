"""The Docker Compose target: a Workload as compose.yaml, .env, plan.json and stack.json (deterministic bytes),
run on this host through `docker compose` (deployctl/docker/)."""

from __future__ import annotations

from typing import Any

from deployctl import docker, templating
from deployctl.errors import InputError
from deployctl.stackdir import StackInfo
from deployctl.targets.base import RenderContext
from deployctl.targets.workload import Workload, endpoint

# The in-container check, by what the engine's image carries (the simulator's image has both).
HEALTH_COMMANDS = {
    "curl": "curl -fsS -o /dev/null http://127.0.0.1:{port}{path} || exit 1",
    "python3": "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)\" || exit 1",
}
FILES = ("compose.yaml", ".env", "plan.json", "stack.json")


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
        return {
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
        place.down()
        return [s.container for s in place.services()] + place.networks()


COMPOSE = Compose()
