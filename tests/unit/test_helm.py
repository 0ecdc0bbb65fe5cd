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
from helpers.golden import assert_golden
from helpers.k8stools import path_with_tools, tool

from deployctl import gpus as profiles
from deployctl import kube, models, planner, spec, targets, tools
from deployctl.cli import cli
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.ops import kubernetes
from deployctl.targets import helm, workload

KUBE_VERSIONS = ("1.28.0", "1.33.0")
# The Kubernetes 1.20 test cluster serves only these groups; users run 1.28 to 1.33.
API_VERSIONS = {"apps/v1", "v1", "node.k8s.io/v1", "networking.k8s.io/v1"}


def plan_for(gpus: int, api_key: bool = False, engine: str = "tgi") -> planner.Plan:
    preset = "llama-3.1-8b-instruct-gptq" if gpus == 1 else "llama-3-70b-instruct-gptq"
    if gpus == 2 and engine == "vllm":  # vLLM 0.30+ refuses the act-order GPTQ build: the article's AWQ one
        preset = "deepseek-r1-distill-llama-70b-awq"
    facts = models.preset(preset).model_copy(update={"path": f"/srv/models/{preset}"})
    text = f"name: chart-{gpus}x4090\ngpus: {gpus}\nengine: {engine}\n"
    if api_key:
        text += "serve:\n  api_key_env: CHART_KEY\n"
    return planner.plan(spec.parse(text), facts, profiles.host("rtx4090", gpus))


def chart(tmp_path: Path, gpus: int = 1, simulate: bool = False, replicas: int = 1, **kw: Any) -> Path:
    p = plan_for(gpus, kw.pop("api_key", False), kw.pop("engine", "tgi"))
    files = targets.render(p, "helm", targets.RenderOptions(simulate=simulate, replicas=replicas, **kw))
    return helm.write_chart(files, tmp_path / "chart")


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
    assert c["image"] == "registry.site:5000/huggingface/text-generation-inference:3.3.7"
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
    source = spec.parse("name: chart-1x4090\ngpus: 1\n")
    req = kubernetes.UpRequest(release="rel", simulate=True, values_files=(bad,))
    with pytest.raises(InputError) as err:
        kubernetes.up(source, kube.Cluster(), req, dry_run=True)
    assert err.value.message.startswith("values refused by the chart's values.schema.json: ")
    assert says in err.value.message
    assert "\n" not in err.value.message


def test_chart_is_deterministic_and_versions_come_from_deployctl_and_the_engine(tmp_path: Path) -> None:
    p = plan_for(2)
    three = targets.RenderOptions(replicas=3)
    assert targets.render(p, "helm", three) == targets.render(p, "helm", three)
    meta = yaml.safe_load(targets.render(p, "helm", targets.RenderOptions())["Chart.yaml"])
    from deployctl import __version__

    assert meta["version"] == __version__ and meta["appVersion"] == "3.3.7"


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


def pod(status: dict[str, Any], node: str = "gpu-1") -> kube.PodState:
    """The state of a pod whose `kubectl get pod -o json` says `status`."""
    return kube.Pod.model_validate(
        {"metadata": {"name": "rel-abc"}, "spec": {"nodeName": node}, "status": status}
    ).state()


def test_pod_problems_are_named() -> None:
    pull = pod(
        {
            "phase": "Pending",
            "containerStatuses": [{"image": "x:1", "state": {"waiting": {"reason": "ErrImageNeverPull"}}}],
        }
    )
    assert pull.problem == "image x:1 is not present on node gpu-1 (ErrImageNeverPull)"
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
    assert gpu.problem.startswith("no node has the free GPUs it asks for")
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
    assert crash.problem == "the engine keeps exiting (exit code 1, 3 restarts)"
    ready = pod({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    assert ready.problem is None and ready.ready


def test_tool_errors_become_one_line_each() -> None:
    def err(text: str) -> Any:
        return kube.explain(tools.ToolError(["helm", "upgrade"], 1, stderr=text))

    assert isinstance(
        err("Error: Kubernetes cluster unreachable: Get ...: dial tcp: connection refused"), EnvironmentProblem
    )
    assert isinstance(err("Error: release: not found"), kube.NotFound)
    assert err("Error: release: not found").exit_code == 5
    assert isinstance(err('error: context "prod" does not exist'), InputError)


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
        assert_golden(text, GOLDEN / folder / name, update=update_golden)


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
    doc = json.loads(no_config.stdout)  # one compact document, as every command's failure under --json
    assert doc["exit_code"] == 3 and doc["error"].startswith("no kubeconfig:") and no_config.stdout.count("\n") == 1
    assert no_config.stderr.startswith("error: no kubeconfig:")


def test_k8s_up_names_every_missing_prerequisite_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig, no helm, no kubectl: one line names all three (no --dry-run needed to see helm is missing)."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["k8s", "up", "--simulate"])
    assert result.exit_code == 3
    (line,) = result.output.strip().splitlines()
    assert line.startswith(
        f"error: 3 problems: no kubeconfig: deployctl does not know which cluster to use (looked for {tmp_path}/missing); "
    )
    assert (
        "; helm is not installed; kubectl is not installed; set KUBECONFIG or pass --kubeconfig FILE; see docs/kubernetes.md"
        in line
    )
    dry = CliRunner().invoke(cli, ["k8s", "up", "--simulate", "--dry-run", "--json"])
    assert dry.exit_code == 3 and json.loads(dry.stdout)["error"] == "helm is not installed"  # all a dry run needs


class FakeKube(kube.Kube):
    """A cluster's nodes and RuntimeClasses as kubectl prints them (`kubectl get -o json`), parsed by the real transport."""

    def __init__(self, gpus_per_node: list[int], runtime_classes: set[str], *, may_list_nodes: bool = True) -> None:
        self.cluster = kube.Cluster()
        self.node_list = {
            "items": [
                {"metadata": {"name": f"node-{i}"}, "status": {"allocatable": {"cpu": "8", "nvidia.com/gpu": str(n)}}}
                for i, n in enumerate(gpus_per_node)
            ]
        }
        self.runtime_classes = runtime_classes
        self.may_list_nodes = may_list_nodes

    def run(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        if args[:2] == ("get", "nodes"):
            if not self.may_list_nodes:
                raise kube.Forbidden('nodes is forbidden: User "dev" cannot list resource "nodes"')
            return json.dumps(self.node_list)
        assert args[:2] == ("get", "runtimeclass")
        name = args[2]
        if name not in self.runtime_classes:
            raise kube.NotFound(f'runtimeclasses.node.k8s.io "{name}" not found')
        return f"runtimeclass.node.k8s.io/{name}"


def test_preflight_names_a_cluster_without_gpu_nodes_or_runtime_class() -> None:
    (no_gpu,) = kubernetes.cluster_problems(FakeKube([0, 1], {"nvidia"}), gpus=2, runtime_class="nvidia")
    assert no_gpu.message == "no GPU node: no node offers 2 nvidia.com/gpu (node-0: 0, node-1: 1)"
    assert no_gpu.exit_code == 3
    (no_class,) = kubernetes.cluster_problems(FakeKube([2], set()), gpus=2, runtime_class="nvidia")
    assert no_class.message.startswith("RuntimeClass 'nvidia' does not exist")
    assert kubernetes.cluster_problems(FakeKube([0, 2], {"nvidia"}), gpus=2, runtime_class="nvidia") == []
    assert kubernetes.cluster_problems(FakeKube([2], set()), gpus=2, runtime_class="") == []
    # Both at once: one error names each, with both hints.
    both = kube.one_error(kubernetes.cluster_problems(FakeKube([1], set()), gpus=2, runtime_class="nvidia"))
    assert isinstance(both, EnvironmentProblem) and both.exit_code == 3
    assert both.message.startswith("2 problems: no GPU node: no node offers 2 nvidia.com/gpu (node-0: 1); ")
    assert "RuntimeClass 'nvidia' does not exist" in both.message
    assert both.hint is not None and "device plugin" in both.hint and "--runtime-class ''" in both.hint


def test_a_bad_namespace_is_refused_in_json_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["k8s", "status", "--release", "llm", "-n", "Bad_NS", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "namespace 'Bad_NS' is not a Kubernetes name"


def test_a_user_who_may_not_list_nodes_is_not_stopped_by_the_preflight() -> None:
    restricted = FakeKube([], {"nvidia"}, may_list_nodes=False)
    assert kubernetes.cluster_problems(restricted, gpus=2, runtime_class="nvidia") == []


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
    failed = tools.ToolError(["helm", "upgrade", "--install", "llm"], 1, stderr=stderr)
    err = kubernetes.rollout_failure("llm", failed, "image x:1 is not present on node gpu-1 (ErrImagePull)")
    assert isinstance(err, kubernetes.RolloutFailed) and err.exit_code == 1
    assert "did not become ready: image x:1 is not present on node gpu-1 (ErrImagePull)" in err.message
    assert err.hint is not None and err.hint.startswith(says)


class FakeCluster(kube.Kube):
    """A release as helm and kubectl print it (`-o json`), read through the real transport's parsing."""

    def __init__(self, answers: dict[tuple[str, ...], Any]) -> None:
        self.cluster = kube.Cluster(namespace="llm")
        self.answers = answers

    def run(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        key = (tool, *[a for a in args if a not in ("-o", "json")])
        if key not in self.answers:
            raise kube.NotFound(f"{key} not found")
        return json.dumps(self.answers[key])


def test_the_helm_target_reads_a_release_from_what_helm_and_kubectl_print() -> None:
    from deployctl.targets.helm import HELM, HelmRelease

    selector = "app.kubernetes.io/instance=llm"
    ready_pod = {
        "metadata": {"name": "llm-a", "labels": {}},
        "spec": {"nodeName": "gpu-1"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "engine", "image": "x:1", "ready": True, "restartCount": 1}],
        },
    }
    pulling = {
        "metadata": {"name": "llm-b"},
        "spec": {"nodeName": "gpu-2"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"image": "x:1", "state": {"waiting": {"reason": "ErrImagePull"}}}],
        },
    }
    gone = {"metadata": {"name": "llm-old", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    cluster = FakeCluster(
        {
            ("helm", "status", "llm"): {
                "name": "llm",
                "version": 3,
                "info": {"status": "deployed", "notes": "ignored"},
                "chart": {"metadata": {"name": "llm", "version": "0.9.0", "appVersion": "3.3.4"}},
            },
            ("kubectl", "get", "deployments", "-l", selector): {
                "items": [
                    {
                        "metadata": {"name": "llm", "labels": {"ai.deployctl/plan-hash": "abc123"}},
                        "spec": {"replicas": 2},
                        "status": {"readyReplicas": 1},
                    }
                ]
            },
            ("kubectl", "get", "services", "-l", selector): {
                "items": [{"metadata": {"name": "llm"}, "spec": {"clusterIP": "10.0.0.7", "ports": [{"port": 8080}]}}]
            },
            ("kubectl", "get", "endpoints", "llm"): {
                "metadata": {"name": "llm"},
                "subsets": [{"addresses": [{"ip": "10.1.0.4"}]}],
            },
            ("kubectl", "get", "pods", "-l", selector): {"items": [ready_pod, pulling, gone]},
        }
    )
    st = HELM.status(HelmRelease(cluster, "llm"))
    assert (st.revision, st.helm_status, st.chart, st.app_version) == (3, "deployed", "llm-0.9.0", "3.3.4")
    assert (st.replicas, st.ready, st.endpoints, st.plan_hash) == (2, 1, 1, "abc123")
    assert (st.service, st.cluster_ip, st.port, st.url) == ("llm", "10.0.0.7", 8080, "http://llm.llm.svc:8080")
    assert st.port_forward == "kubectl -n llm port-forward svc/llm 8080:8080"
    assert [(p.name, p.ready, p.restarts, p.node) for p in st.pods] == [
        ("llm-a", True, 1, "gpu-1"),
        ("llm-b", False, 0, "gpu-2"),
    ]
    assert st.pods[1].problem == "image x:1 is not present on node gpu-2 (ErrImagePull)"
    assert not st.ok  # one replica of two is Ready
    doc = st.as_dict()
    assert doc["pods"][0] == {
        "name": "llm-a",
        "phase": "Running",
        "ready": True,
        "restarts": 1,
        "node": "gpu-1",
        "problem": None,
    }


def test_json_of_a_shape_deployctl_cannot_read_is_one_line_not_a_traceback() -> None:
    broken = FakeCluster({("kubectl", "get", "pods", "-l", "x=y"): {"items": [{"metadata": {}}]}})
    with pytest.raises(DeployctlError) as err:
        broken.pods("x=y")
    assert (
        err.value.message
        == "kubectl get pods printed JSON deployctl cannot read: items.0.metadata.name: Field required"
    )


class FailingInstall(FakeCluster):
    """A cluster where `helm upgrade --install` fails the way Helm says it (its stderr), or takes too long."""

    def __init__(self, failure: tools.ToolError) -> None:
        super().__init__({("kubectl", "get", "pods", "-l", "app.kubernetes.io/instance=llm"): {"items": []}})
        self.failure = failure
        self.installs = 0

    def install(self, release: str, chart_dir: Path, values: Any, *, timeout_s: int) -> None:
        self.installs += 1
        raise self.failure


def test_a_failed_install_says_what_helm_did_and_a_slow_helm_is_a_host_problem(tmp_path: Path) -> None:
    from deployctl.targets.helm import HelmRelease

    uninstalled = (
        "Error: INSTALLATION FAILED: release llm failed, and has been uninstalled due to atomic being set: "
        "timed out waiting for the condition"
    )
    cluster = FailingInstall(tools.ToolError(["helm", "upgrade", "--install", "llm"], 1, stderr=uninstalled))
    with pytest.raises(kubernetes.RolloutFailed) as err:
        kubernetes._install(HelmRelease(cluster, "llm", tmp_path, (), 60))
    assert cluster.installs == 1 and err.value.removed and err.value.exit_code == 1
    assert err.value.message == f"the install of llm did not become ready: {uninstalled}"  # no pod said more
    assert err.value.hint == "Helm removed it: nothing is left behind"
    slow = FailingInstall(tools.ToolTimedOut(["helm", "upgrade"], 180))
    with pytest.raises(EnvironmentProblem) as late:
        kubernetes._install(HelmRelease(slow, "llm", tmp_path, (), 60))
    assert late.value.message == "helm upgrade did not finish in 180s" and late.value.exit_code == 3


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_sharded_charts_and_compose_files_carry_the_nccl_settings_the_plan_names(tmp_path: Path, engine: str) -> None:
    p = plan_for(2, engine=engine)
    named = next(w for w in p.warnings if "no peer-to-peer" in w)
    pod = kind(template(chart(tmp_path, gpus=2, engine=engine)), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    service = yaml.safe_load(targets.render(p, "compose", targets.RenderOptions())["compose.yaml"])["services"][
        "engine"
    ]
    for rendered_env, rendered_args in ((env, container["args"]), (service["environment"], service["command"])):
        assert rendered_env["NCCL_P2P_DISABLE"] == "1" and "NCCL_P2P_DISABLE=1" in named
        custom = "--disable-custom-all-reduce" in rendered_args
        assert custom == (engine == "vllm") == ("--disable-custom-all-reduce" in named)
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])


def test_the_replicas_bound_is_the_charts_schema() -> None:
    from deployctl.cli import k8s as k8s_cli
    from deployctl.cli import plan as plan_cli

    rendered = targets.render(plan_for(1), "helm", targets.RenderOptions())
    schema = json.loads(rendered["values.schema.json"])
    assert schema["properties"]["replicas"]["maximum"] == helm.MAX_REPLICAS
    for command in (plan_cli.render, k8s_cli.up):
        option = next(p for p in command.params if p.name == "replicas")
        assert option.type.max == helm.MAX_REPLICAS and option.type.min == 0  # type: ignore[attr-defined]
