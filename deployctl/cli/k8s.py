"""`deployctl k8s up/status/down`: the plan as a Helm release on a Kubernetes GPU cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import json_option, load_spec, replicas_option, sim_fault_option, spec_options
from deployctl.cli.output import echo_json

CLUSTER_OPTIONS = [
    click.option("-n", "--namespace", default="default", show_default=True, help="The release's namespace."),
    click.option("--kube-context", help="The kubeconfig context (default: the current one)."),
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        help="The kubeconfig file (default: $KUBECONFIG or ~/.kube/config).",
    ),
]


def cluster_options(fn: Any) -> Any:
    for option in reversed(CLUSTER_OPTIONS):
        fn = option(fn)
    return fn


def _cluster(kwargs: dict[str, Any]) -> Any:
    from deployctl.ops import kubernetes

    return kubernetes.cluster(
        namespace=kwargs.pop("namespace"), context=kwargs.pop("kube_context"), kubeconfig=kwargs.pop("kubeconfig")
    )


@click.group()
def k8s() -> None:
    """Run the plan on a Kubernetes GPU cluster through Helm (see docs/kubernetes.md).

    \b
    Examples:
      deployctl k8s up --gpu-model rtx4090 --gpus 2 --replicas 3 -n llm --dry-run
      deployctl k8s status --release my-llm -n llm
      deployctl k8s down --release my-llm -n llm --dry-run
    """


@k8s.command()
@spec_options
@cluster_options
@click.option("--simulate", is_flag=True, help="Install the simulator in place of the engine (no GPU node needed).")
@click.option("--release", help="The Helm release name (default: the spec's name).")
@replicas_option
@click.option("--runtime-class", default="nvidia", show_default=True, help="The pods' RuntimeClass; '' for none.")
@click.option(
    "--values", "values_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False), help="More Helm values."
)
@click.option("--set", "set_values", multiple=True, metavar="KEY=VALUE", help="A Helm value (repeatable).")
@click.option("--timeout", type=int, help="Seconds to wait for every replica to be Ready (default: the plan's).")
@click.option("--dry-run", is_flag=True, help="Render the manifests (helm template); change nothing.")
@sim_fault_option
@json_option
def up(
    as_json: bool,
    simulate: bool,
    release: str | None,
    replicas: int,
    runtime_class: str,
    values_files: tuple[Path, ...],
    set_values: tuple[str, ...],
    timeout: int | None,
    dry_run: bool,
    faults: dict[str, str],
    **kwargs: Any,
) -> None:
    """Install or upgrade the release and wait until every replica is Ready.

    A rollout that does not become Ready in time is rolled back by Helm (--atomic), and said so.

    \b
    Example:
      deployctl k8s up --gpu-model rtx4090 --gpus 2 --replicas 2 -n llm --dry-run
    """
    from deployctl.cli import output
    from deployctl.ops import kubernetes

    cluster = _cluster(kwargs)
    spec = load_spec(kwargs)
    req = kubernetes.UpRequest(
        release=release or spec.name.replace("_", "-"),
        simulate=simulate,
        faults=faults,
        replicas=replicas,
        runtime_class=runtime_class,
        values_files=values_files,
        set_values=set_values,
        timeout_s=timeout,
    )
    result = kubernetes.up(spec, cluster, req, dry_run=dry_run, report=output.lines(enabled=not as_json))
    if as_json:
        echo_json({"ok": True, **result.as_dict()})
        return
    if result.dry_run:
        click.echo(
            f"dry run: would install {', '.join(result.manifests)} as release {result.release} in {result.namespace}"
        )
        return
    click.echo(
        f"ready: {result.ready}/{result.replicas} replica(s) of {result.release} (revision {result.revision}, plan {result.plan_hash})"
    )
    click.echo(f"service: {result.url} (ClusterIP {result.cluster_ip})")
    click.echo(f"from here: {result.port_forward}")


@k8s.command()
@cluster_options
@click.option("--release", help="The Helm release name (default: the name in ./deployctl.yaml).")
@json_option
def status(as_json: bool, release: str | None, **kwargs: Any) -> None:
    """Show the release: Helm revision, Ready replicas, pods and their problems, the Service.

    Exits 0 when every replica is Ready and behind the Service, 1 otherwise, 5 when there is no such release.

    \b
    Example:
      deployctl k8s status --release my-llm -n llm --json
    """
    from deployctl.ops import kubernetes

    cluster = _cluster(kwargs)
    st = kubernetes.status(cluster, release or _spec_release())
    if as_json:
        echo_json({"ok": st.ok, **st.as_dict()})
    else:
        from deployctl.cli import output

        # What the cluster says (pod names, nodes, its problems): escaped, never markup.
        output.table(
            f"{st.release} in {st.namespace}: revision {st.revision} {st.helm_status}, "
            f"{st.ready}/{st.replicas} Ready, {st.endpoints} endpoint(s) at {st.url}",
            ["pod", "phase", "ready", "restarts", "node", "problem"],
            [(p.name, p.phase, "yes" if p.ready else "no", str(p.restarts), p.node, p.problem or "") for p in st.pods],
        )
    if not st.ok:
        raise click.exceptions.Exit(1)


@k8s.command()
@cluster_options
@click.option("--release", help="The Helm release name (default: the name in ./deployctl.yaml).")
@click.option("--timeout", type=int, default=120, show_default=True, help="Seconds to wait for the pods to go.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option
def down(as_json: bool, release: str | None, timeout: int, dry_run: bool, **kwargs: Any) -> None:
    """Uninstall the release and wait until its pods are gone.

    \b
    Example:
      deployctl k8s down --release my-llm -n llm --dry-run
    """
    from deployctl.ops import kubernetes

    cluster = _cluster(kwargs)
    result = kubernetes.down(cluster, release or _spec_release(), timeout_s=timeout, dry_run=dry_run)
    if as_json:
        echo_json({"ok": not result.left, **result.as_dict()})
    elif result.dry_run:
        click.echo(f"dry run: would remove {', '.join(result.removed)}")
    elif result.left:
        click.echo(f"uninstalled {result.release}, but these remain: {', '.join(result.left)}", err=True)
    else:
        click.echo(f"uninstalled {result.release} from {result.namespace}: no release and no pod left")
    if result.left:
        raise click.exceptions.Exit(1)


def _spec_release() -> str:
    from deployctl import spec

    name: str = spec.load(None).name
    return name.replace("_", "-")
