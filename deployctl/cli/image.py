"""`deployctl image ...`."""

from __future__ import annotations

import click

from deployctl.cli.options import echo_json, json_option


@click.group()
def image() -> None:
    """Build the simulator image and base images; inspect and slim engine images."""


@image.command("build-sim")
@click.option("--base-image", help="Base with python3 (default: a local Debian base, else python:3.11-slim).")
@click.option("-t", "--tag", default=None, help="Tag (default: deployctl/tgi-sim:VERSION).")
@json_option
def build_sim(base_image: str | None, tag: str | None, as_json: bool) -> None:
    """Build the TGI-protocol simulator image used by `up --simulate`.

    \b
    Example:
      deployctl image build-sim --base-image deployctl/debian-base:bookworm
    """
    from deployctl.engines.simulator import SIM_IMAGE
    from deployctl.images.build import build_sim as build

    def show(line: str) -> None:
        if not as_json:
            click.echo(f"  {line}", err=True)

    built = build(base_image, tag or SIM_IMAGE, progress=show)
    if as_json:
        echo_json(built.__dict__)
    else:
        click.echo(f"built {built.tag} ({built.size / 1e6:.0f} MB) from {built.base}")


@image.command("build-base")
@click.option("-t", "--tag", default=None, help="Tag (default: deployctl/debian-base:bookworm).")
@click.option("--suite", default="bookworm", show_default=True)
@json_option
def build_base(tag: str | None, suite: str, as_json: bool) -> None:
    """Build a base image from Debian packages (mmdebstrap + docker import), no registry needed.

    \b
    Example:
      deployctl image build-base && deployctl image build-sim
    """
    from deployctl.images.build import DEBIAN_BASE, build_debian_base

    built = build_debian_base(tag or DEBIAN_BASE, suite, progress=lambda line: click.echo(f"  {line}", err=True))
    if as_json:
        echo_json(built.__dict__)
    else:
        click.echo(f"built {built.tag} ({built.size / 1e6:.0f} MB) from {built.base}")
