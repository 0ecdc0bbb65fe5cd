"""The `deployctl` command line: thin Click commands, loaded only when called."""

from __future__ import annotations

import importlib
from typing import Any, NoReturn

import click

from deployctl import __version__

# name -> (module, attribute, one-line help). Modules load lazily so `--help` stays fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("deployctl.cli.plan", "init", "Write a commented starter deployctl.yaml."),
    "plan": ("deployctl.cli.plan", "plan", "Show the per-GPU memory plan and the engine's arguments."),
    "render": (
        "deployctl.cli.plan",
        "render",
        "Write the Docker Compose stack (or, --target helm, a Helm chart) for the plan.",
    ),
    "up": ("deployctl.cli.run", "up", "Plan, render, start the stack and wait until the model answers."),
    "rollback": (
        "deployctl.cli.run",
        "rollback",
        "Go back to the stack's last good revision (the one before the running one).",
    ),
    "down": ("deployctl.cli.run", "down", "Stop the stack and remove its containers and network."),
    "status": ("deployctl.cli.run", "status", "Show each service's state, health, uptime and restarts."),
    "logs": ("deployctl.cli.run", "logs", "Show (or follow) the stack's logs."),
    "health": (
        "deployctl.cli.health",
        "health",
        "Check the endpoint: /health, /info against the plan, one generation.",
    ),
    "k8s": (
        "deployctl.cli.k8s",
        "k8s",
        "Install, check and remove the plan as a Helm release on a Kubernetes GPU cluster.",
    ),
    "bundle": (
        "deployctl.cli.bundle",
        "bundle",
        "Offline bundles: create, verify and install (signed, checksummed, splittable).",
    ),
    "monitor": (
        "deployctl.cli.monitor",
        "monitor",
        "Render Prometheus scrape config, alert rules and Grafana dashboards for the stack.",
    ),
    "exporter": ("deployctl.cli.monitor", "exporter", "Serve the GPUs' NVML readings for Prometheus (no DCGM)."),
    "bench": ("deployctl.cli.bench", "bench", "Measure TTFT, inter-token latency, throughput, max QPS under an SLO."),
    "image": ("deployctl.cli.image", "image", "Build the simulator image; inspect and slim engine images."),
    "gpus": ("deployctl.cli.power", "gpus", "List this machine's GPUs (NVML)."),
    "power": ("deployctl.cli.power", "power", "Show, set, reset and persist GPU power limits."),
    "doctor": ("deployctl.cli.power", "doctor", "Check the host: driver, GPUs, Docker, Compose, disk, ports."),
}

EXAMPLES = """\b
Examples:
  deployctl init                                   # write deployctl.yaml
  deployctl plan --gpu-model rtx4090 --gpus 2 --preset llama-3-70b-instruct-gptq
  deployctl render --simulate --stack-dir ./stack  # compose.yaml, .env, plan.json
  deployctl up --simulate                          # whole flow, no GPU needed
  deployctl up --simulate --engine vllm            # the same with vLLM's API
  deployctl up --gpus 2                            # the real engine on two GPUs
  deployctl status --json ; deployctl logs -F ; deployctl down
  deployctl health --json >> health.jsonl          # one JSON line per check
  deployctl render --target helm --gpu-model rtx4090 --gpus 2 --replicas 3 -o ./llm-chart
  deployctl bench --preset ttft --slo-ttft 500 --cost 4200  # SLO and cost report
  deployctl monitor --slo-ttft 500 --slo-itl 50    # Prometheus rules, Grafana dashboards
  deployctl bundle create -o llm.tar --sign site-key --split 4G   # then, at the site:
  sudo deployctl bundle install llm.tar.parts.json --pubkey site-key.pub --target /srv/deployctl
  deployctl image build-sim                        # the protocol simulator image
  deployctl gpus ; deployctl power set 300 --dry-run ; deployctl doctor

\b
Exit codes:
  0    ok
  1    a check failed (health degraded, doctor FAIL, verification failed)
  2    bad input: a flag, the spec, a model directory (nothing was changed)
  3    host problem: driver, Docker, permissions
  4    the model does not fit (the message says what would)
  5    not running / not found (health, status, logs)
  130  interrupted
With --json, stdout is one JSON document, on failure too: {"error", "hint", "exit_code"}.
"""


class CliError(click.ClickException):
    """A deployctl error at the CLI's edge: one line on stderr, the error's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class; ours varies

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Remembered before parsing: even a flag click rejects gets its error as JSON under --json.
        ctx.meta["deployctl.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from deployctl.errors import DeployctlError

        as_json = bool(ctx.meta.get("deployctl.json"))
        try:
            return super().invoke(ctx)
        except DeployctlError as exc:
            _fail(exc.message, exc.hint, exc.exit_code, as_json)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:  # a bad flag or argument: click names it
            _fail(exc.format_message().rstrip("."), _usage_hint(exc), exc.exit_code, as_json)
        except click.Abort:
            _fail("interrupted", None, 130, as_json)
        except KeyboardInterrupt:
            _fail("interrupted", None, 130, as_json)


def _usage_hint(exc: click.ClickException) -> str | None:
    ctx = getattr(exc, "ctx", None)
    return f"see `{ctx.command_path} --help`" if ctx is not None else None


def _fail(message: str, hint: str | None, exit_code: int, as_json: bool) -> NoReturn:
    """Say what went wrong (one line on stderr; one JSON document on stdout with --json), then exit."""
    from deployctl.cli import output

    if as_json:
        output.echo_json(output.error_document(message, hint, exit_code), line=True)
    raise CliError(output.error_line(message, hint).removeprefix("error: "), exit_code) from None


@click.group(cls=LazyGroup, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deployctl")
def cli() -> None:
    """Put a GPTQ language model into production on one or two RTX 4090s."""


def main() -> None:
    """Run the CLI (the console script)."""
    cli(prog_name="deployctl")
