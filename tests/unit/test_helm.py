"""The Helm chart target: every chart lints, templates and validates strictly; values it cannot run are refused."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from helpers.k8stools import path_with_tools, tool

from deployctl import gpus as profiles
from deployctl import models, planner, spec
from deployctl.cli import cli
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.ops import k8s as ops
from deployctl.targets import helm, workload

KUBE_VERSIONS = ("1.28.0", "1.33.0")
# The Kubernetes 1.20 test cluster serves only these groups; users run 1.28 to 1.33.
API_VERSIONS = {"apps/v1", "v1", "node.k8s.io/v1", "networking.k8s.io/v1"}


def plan_for(gpus: int, api_key: bool = False, engine: str = "tgi") -> planner.Plan:
    preset = "llama-3.1-8b-instruct-gptq" if gpus == 1 else "llama-3-70b-instruct-gptq"
    facts = models.preset(preset).model_copy(update={"path": f"/srv/models/{preset}"})
    text = f"name: chart-{gpus}x4090\ngpus: {gpus}\nengine: {engine}\n"
    if api_key:
        text += "serve:\n  api_key_env: CHART_KEY\n"
    return planner.plan(spec.parse(text), facts, profiles.host("rtx4090", gpus))


def chart(tmp_path: Path, gpus: int = 1, simulate: bool = False, replicas: int = 1, **kw: Any) -> Path:
    p = plan_for(gpus, kw.pop("api_key", False), kw.pop("engine", "tgi"))
    src = helm.source_from_plan(p, simulate=simulate)
    return helm.write_chart(helm.render(src, replicas=replicas, **kw), tmp_path / "chart")


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def template(chart_dir: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "rel", str(chart_dir)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(*args).stdout) if d]


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == name]
    return found


@pytest.mark.parametrize("gpus", [1, 2])
@pytest.mark.parametrize("engine", ["tgi", "vllm"])
@pytest.mark.parametrize("simulate", [False, True], ids=["engine", "simulator"])
@pytest.mark.parametrize("replicas", [1, 3])
def test_every_chart_lints_templates_and_validates_strictly(
    tmp_path: Path, gpus: int, engine: str, simulate: bool, replicas: int
) -> None:
    chart_dir = chart(tmp_path, gpus, simulate, replicas, engine=engine)
    lint = run_helm("lint", "--strict", str(chart_dir))
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    # Every optional object on, so each template is checked too.
    docs = template(chart_dir, "networkPolicy.enabled=true", "apiKey.value=k", "model.source=pvc")
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "Secret", "PersistentVolumeClaim", "NetworkPolicy"}
    assert {d["apiVersion"] for d in docs} <= API_VERSIONS
    for version in KUBE_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpus  # the plan's shard count, per replica
    assert kind(docs, "Deployment")["spec"]["replicas"] == replicas
    c = pod["containers"][0]
    images = {"tgi": "huggingface/text-generation-inference:", "vllm": "vllm/vllm-openai:"}
    assert c["image"] == SIM_IMAGE if simulate else images[engine] in c["image"]
    assert {e["name"] for e in c["env"] if "valueFrom" in e} == {"VLLM_API_KEY" if engine == "vllm" else "API_KEY"}
    port = c["ports"][0]["containerPort"]
    assert port == {"tgi": helm.SIM_PORT if simulate else 80, "vllm": 8000}[engine]
    assert kind(docs, "Service")["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]


def test_deployment_carries_the_plan(tmp_path: Path) -> None:
    p = plan_for(2)
    docs = template(chart(tmp_path, gpus=2))
    deploy = kind(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert deploy["metadata"]["labels"]["ai.deployctl/plan-hash"] == p.digest()
    assert deploy["spec"]["template"]["metadata"]["labels"]["ai.deployctl/plan-hash"] == p.digest()
    assert c["args"] == p.engine.args and c["image"] == p.engine.image
    assert {e["name"]: e["value"] for e in c["env"]} == p.engine.env
    assert pod["runtimeClassName"] == "nvidia"
    assert c["ports"][0]["containerPort"] == 80
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    start = c["startupProbe"]
    budget = 120 + int(sum(g.weights for g in p.gpus) / 1e9 * 10)  # compose's load_timeout_s
    assert start["periodSeconds"] * start["failureThreshold"] >= budget
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    model = next(m for m in c["volumeMounts"] if m["name"] == "model")
    assert model == {"name": "model", "mountPath": p.engine.model_mount, "readOnly": True}
    host = next(v for v in pod["volumes"] if v["name"] == "model")
    assert host["hostPath"] == {"path": p.model.path, "type": "Directory"}
    assert pod["automountServiceAccountToken"] is False
    assert kind(docs, "Service")["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]


def test_one_gpu_has_no_shm_and_the_simulator_runs_as_a_user_read_only(tmp_path: Path) -> None:
    pod = kind(template(chart(tmp_path, gpus=1, simulate=True)), "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert all(v["name"] != "shm" for v in pod["volumes"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "scratch-0", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["ports"][0]["containerPort"] == helm.SIM_PORT
    assert c["image"] == SIM_IMAGE  # this run's own simulator image (tests/conftest.py names it)


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
@pytest.mark.parametrize("simulate", [False, True], ids=["engine", "simulator"])
def test_chart_and_compose_share_the_workloads_decisions(tmp_path: Path, engine: str, simulate: bool) -> None:
    """The pod runs what the Compose stack runs: one Workload (image, args, env, probe, user, scratch, limits)."""
    p = plan_for(2, api_key=True, engine=engine)
    wl = workload.from_plan(p, simulate=simulate, api_key="k")
    docs = template(chart(tmp_path, gpus=2, simulate=simulate, engine=engine, api_key=True), "apiKey.value=k")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == wl.image and tuple(c["args"]) == wl.args
    env = {e["name"]: e.get("value") for e in c["env"]}
    (secret,) = wl.secrets
    assert c["env"][-1]["valueFrom"]["secretKeyRef"]["key"] == "api-key" and env.pop(secret.env) is None
    moved = {"PORT": str(helm.SIM_PORT)} if simulate and engine == "tgi" else {}
    assert env == {**dict(wl.env), **moved}
    assert c["startupProbe"]["httpGet"]["path"] == wl.probe.path
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= wl.probe.start_budget_s
    assert pod["terminationGracePeriodSeconds"] == wl.stop_grace_s
    uid, gid = (int(x) for x in wl.security.user.split(":"))
    ctx = pod["securityContext"]
    assert (ctx["runAsUser"], ctx["runAsGroup"]) == (uid, gid)
    assert ctx.get("runAsNonRoot", False) is (uid != 0)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    scratch = {mounts[n]: volumes[n]["emptyDir"] for n in mounts if n.startswith("scratch-")}
    assert scratch == {
        s.path: {"medium": "Memory", "sizeLimit": helm._mebibytes(s.size_bytes)} for s in wl.security.scratch
    }
    limit = c["resources"]["limits"]["memory"]
    assert limit == helm._mebibytes(wl.security.memory_bytes)
    kubernetes_validate.validate(kind(docs, "Deployment"), KUBE_VERSIONS[-1], strict=True)  # raises when invalid


def test_runtime_class_registry_and_pull_policy_are_values(tmp_path: Path) -> None:
    chart_dir = chart(tmp_path, gpus=1)
    docs = template(chart_dir, "runtimeClassName=", "image.registry=registry.site:5000", "image.pullPolicy=Never")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod
    c = pod["containers"][0]
    assert c["image"] == "registry.site:5000/huggingface/text-generation-inference:3.3.4"
    assert c["imagePullPolicy"] == "Never"
    rendered = chart(tmp_path / "b", gpus=1, runtime_class="")
    assert "runtimeClassName" not in kind(template(rendered), "Deployment")["spec"]["template"]["spec"]


def test_api_key_is_never_printed_unless_given_inline(tmp_path: Path) -> None:
    chart_dir = chart(tmp_path, gpus=1, api_key=True)
    refused = run_helm("template", "rel", str(chart_dir), check=False)
    assert refused.returncode != 0
    assert "set apiKey.existingSecret" in refused.stderr
    docs = template(chart_dir, "apiKey.existingSecret=site-llm-key")
    assert "Secret" not in {d["kind"] for d in docs}
    env = kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "API_KEY")
    assert ref["valueFrom"] == {"secretKeyRef": {"name": "site-llm-key", "key": "api-key"}}
    inline = template(chart_dir, "apiKey.value=s3cret-key")
    secret = kind(inline, "Secret")
    assert base64.b64decode(secret["data"]["api-key"]) == b"s3cret-key"
    assert "s3cret" not in (chart_dir / "values.yaml").read_text()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"replicas": -1}, "replicas: Must be greater than or equal to 0"),
        ({"gpus": "two"}, "gpus: Invalid type. Expected: integer"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy: image.pullPolicy must be one of"),
        ({"runtimeClassName": "Not_A_Name"}, "runtimeClassName"),
        ({"model": {"source": "nfs"}}, "model.source: model.source must be one of"),
        ({"resources": {"limits": {"nvidia.com/gpu": 4}}}, "resources.limits"),
        ({"replica": 2}, "Additional property replica is not allowed"),
    ],
)
def test_a_broken_values_file_is_refused_with_a_clear_message(
    tmp_path: Path, values: dict[str, Any], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", path_with_tools())
    bad = tmp_path / "site-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    src = helm.source_from_plan(plan_for(1), simulate=True)
    req = ops.UpRequest(source=src, release="rel", values_files=(bad,))
    with pytest.raises(InputError) as err:
        ops.up(ops.Cluster(), req, dry_run=True)
    assert err.value.message.startswith("values refused by the chart's values.schema.json: ")
    assert says in err.value.message
    assert "\n" not in err.value.message


def test_chart_is_deterministic_and_versions_come_from_deployctl_and_the_engine(tmp_path: Path) -> None:
    src = helm.source_from_plan(plan_for(2), simulate=False)
    assert helm.render(src, replicas=3) == helm.render(src, replicas=3)
    meta = yaml.safe_load(helm.render(src)["Chart.yaml"])
    from deployctl import __version__

    assert meta["version"] == __version__ and meta["appVersion"] == "3.3.4"


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        (
            "ghcr.io/huggingface/text-generation-inference:3.3.4",
            ("ghcr.io", "huggingface/text-generation-inference", "3.3.4", ""),
        ),
        ("deployctl/tgi-sim:0.1.0", ("", "deployctl/tgi-sim", "0.1.0", "")),
        ("localhost:5000/tgi", ("localhost:5000", "tgi", "latest", "")),
        ("vllm/vllm-openai@sha256:" + "a" * 64, ("", "vllm/vllm-openai", "latest", "sha256:" + "a" * 64)),
    ],
)
def test_image_reference_splits_like_docker(image: str, parts: tuple[str, str, str, str]) -> None:
    ref = helm.ImageRef.parse(image)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == parts


def test_chart_dir_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds other files"):
        chart(tmp_path)
    assert (tmp_path / "chart" / "notes.txt").read_text() == "mine"


# -- what the cluster says, in the user's words ----------------------------------------------------


def pod(status: dict[str, Any], node: str = "gpu-1") -> dict[str, Any]:
    return {"metadata": {"name": "rel-abc"}, "spec": {"nodeName": node}, "status": status}


def test_pod_problems_are_named() -> None:
    pull = pod(
        {
            "phase": "Pending",
            "containerStatuses": [{"image": "x:1", "state": {"waiting": {"reason": "ErrImageNeverPull"}}}],
        }
    )
    assert ops.pod_state(pull).problem == "image x:1 is not present on node gpu-1 (ErrImageNeverPull)"
    gpu = pod(
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                }
            ],
        }
    )
    assert ops.pod_state(gpu).problem.startswith("no node has the free GPUs it asks for")
    crash = pod(
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1}},
                }
            ],
        }
    )
    assert ops.pod_state(crash).problem == "the engine keeps exiting (exit code 1, 3 restarts)"
    ready = pod({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    assert ops.pod_state(ready).problem is None and ops.pod_state(ready).ready


def test_tool_errors_become_one_line_each() -> None:
    def err(text: str) -> Any:
        return ops.explain(ops.ToolError(["helm", "upgrade"], 1, text))

    assert isinstance(
        err("Error: Kubernetes cluster unreachable: Get ...: dial tcp: connection refused"), EnvironmentProblem
    )
    assert isinstance(err("Error: release: not found"), ops.NotFound)
    assert err("Error: release: not found").exit_code == 5
    assert isinstance(err('error: context "prod" does not exist'), InputError)


# -- the CLI --------------------------------------------------------------------------------------


def test_render_target_helm_writes_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "llm-chart"
    result = CliRunner().invoke(
        cli, ["render", "--target", "helm", "--gpu-model", "rtx4090", "--gpus", "2", "--replicas", "3", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}: Chart.yaml")
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["replicas"] == 3 and values["gpus"] == 2 and values["runtimeClassName"] == "nvidia"
    assert (out / "templates" / "deployment.yaml").is_file() and (out / "values.schema.json").is_file()


def test_k8s_up_needs_a_gpu_model_and_a_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_with_tools())
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.chdir(tmp_path)
    no_model = CliRunner().invoke(cli, ["k8s", "up", "--gpus", "2"])
    assert no_model.exit_code == 2
    assert no_model.output.strip().splitlines() == [
        "error: a plan for a cluster needs the nodes' GPU model; pass --gpu-model (e.g. rtx4090); each replica gets --gpus of them"
    ]
    no_config = CliRunner().invoke(cli, ["k8s", "up", "--simulate", "--json"])
    assert no_config.exit_code == 3
    doc = yaml.safe_load(no_config.stdout)
    assert doc["ok"] is False and doc["error"].startswith("no kubeconfig:")


class FakeKube:
    """What kubectl says about a cluster's nodes and RuntimeClasses (the shape of `kubectl get -o json`)."""

    def __init__(self, gpus_per_node: list[int], runtime_classes: set[str]) -> None:
        self.nodes = [
            {"metadata": {"name": f"node-{i}"}, "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": str(n)}}}
            for i, n in enumerate(gpus_per_node)
        ]
        self.runtime_classes = runtime_classes

    def json(self, tool: str, *args: str) -> Any:
        assert args == ("get", "nodes")
        return {"items": self.nodes}

    def run(self, tool: str, *args: str, **kw: Any) -> str:
        name = args[2]
        if name not in self.runtime_classes:
            raise ops.NotFound(f'runtimeclasses.node.k8s.io "{name}" not found')
        return f"runtimeclass.node.k8s.io/{name}"


def test_preflight_names_a_cluster_without_gpu_nodes_or_runtime_class() -> None:
    with pytest.raises(EnvironmentProblem) as err:
        ops.check_cluster(FakeKube([0, 1], {"nvidia"}), gpus=2, runtime_class="nvidia")  # type: ignore[arg-type]
    assert err.value.message == "no GPU node: no node offers 2 nvidia.com/gpu (node-0: 0, node-1: 1)"
    assert err.value.exit_code == 3
    with pytest.raises(EnvironmentProblem, match="RuntimeClass 'nvidia' does not exist"):
        ops.check_cluster(FakeKube([2], set()), gpus=2, runtime_class="nvidia")  # type: ignore[arg-type]
    ops.check_cluster(FakeKube([0, 2], {"nvidia"}), gpus=2, runtime_class="nvidia")  # type: ignore[arg-type]
    ops.check_cluster(FakeKube([2], set()), gpus=2, runtime_class="")  # type: ignore[arg-type]


def test_bundle_target_helm_carries_a_chart_helm_installs(tmp_path: Path) -> None:
    from helpers.tinymodel import write_spec, write_tiny_model

    from deployctl.bundle import create
    from deployctl.bundle.install import verify
    from deployctl.ops import plan as deploy

    source = spec.load(write_spec(tmp_path, write_tiny_model(tmp_path / "tiny-llama")))
    plan = deploy.make_plan(source, simulate=True)
    out = create.create(source, plan, tmp_path / "b", images=[], wheels="none", simulate=True, target="helm").path
    (packaged,) = (out / "stack" / "chart").glob("*.tgz")
    assert verify(out, None, insecure=True).entries >= 5
    assert run_helm("lint", "--strict", str(packaged)).returncode == 0
    docs = [d for d in yaml.safe_load_all(run_helm("template", "rel", str(packaged)).stdout) if d]
    assert kind(docs, "Deployment")["metadata"]["labels"]["ai.deployctl/plan-hash"] == plan.digest()
    # Packaging is deterministic: the same plan gives the same bytes (and the same manifest checksum).
    again = helm.package(helm.render(helm.source_from_plan(plan, simulate=True)))
    assert again == (packaged.name, packaged.read_bytes())


GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.mark.parametrize(("engine", "folder"), [("tgi", "helm-2x4090"), ("vllm", "helm-vllm-2x4090")])
def test_golden_chart(tmp_path: Path, update_golden: bool, engine: str, folder: str) -> None:
    """values.yaml and `helm template` of the 2 x RTX 4090 chart per engine, pinned (pytest --update-golden to refresh)."""
    chart_dir = chart(tmp_path, gpus=2, replicas=2, engine=engine)
    rendered = {
        "values.yaml": (chart_dir / "values.yaml").read_text(),
        "manifests.yaml": run_helm("template", "golden", str(chart_dir), "--namespace", "llm").stdout,
    }
    for name, text in rendered.items():
        path = GOLDEN / folder / name
        if update_golden:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"{path} differs: run pytest --update-golden if intended"


def test_a_bad_namespace_is_refused_in_json_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["k8s", "status", "--release", "llm", "-n", "Bad_NS", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "namespace 'Bad_NS' is not a Kubernetes name"


def test_a_user_who_may_not_list_nodes_is_not_stopped_by_the_preflight() -> None:
    class Restricted(FakeKube):
        def json(self, tool: str, *args: str) -> Any:
            raise ops.Forbidden('nodes is forbidden: User "dev" cannot list resource "nodes"')

    ops.check_cluster(Restricted([], {"nvidia"}), gpus=2, runtime_class="nvidia")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stderr", "says"),
    [
        (
            "Error: UPGRADE FAILED: release llm failed, and has been rolled back due to atomic being set: timed out waiting for the condition",
            "Helm rolled it back: the previous revision serves",
        ),
        (
            "Error: INSTALLATION FAILED: release llm failed, and has been uninstalled due to atomic being set: timed out waiting for the condition",
            "Helm removed it: nothing is left behind",
        ),
        (
            "Error: UPGRADE FAILED: an error occurred while rolling back the release. original upgrade error: timed out waiting for the condition: timed out waiting for the condition",
            "Helm's rollback to the previous revision did not become ready in --timeout either",
        ),
    ],
)
def test_a_failed_rollout_says_what_helm_did(stderr: str, says: str) -> None:
    err = ops.rollout_failure("llm", 1, stderr, "image x:1 is not present on node gpu-1 (ErrImagePull)")
    assert isinstance(err, ops.RolloutFailed) and err.exit_code == 1
    assert "did not become ready: image x:1 is not present on node gpu-1 (ErrImagePull)" in err.message
    assert err.hint is not None and err.hint.startswith(says)


def test_the_replicas_bound_is_the_charts_schema() -> None:
    import json
    from importlib import resources

    from deployctl.cli import k8s as k8s_cli
    from deployctl.cli import plan as plan_cli
    from deployctl.targets import helm

    schema = json.loads((resources.files("deployctl") / "templates/helm/values.schema.json").read_text())
    assert schema["properties"]["replicas"]["maximum"] == helm.MAX_REPLICAS
    for command in (plan_cli.render, k8s_cli.up):
        option = next(p for p in command.params if p.name == "replicas")
        assert option.type.max == helm.MAX_REPLICAS and option.type.min == 0  # type: ignore[attr-defined]
