"""`deployctl image ...`."""

from __future__ import annotations

from typing import Any

import click

from deployctl.cli import output
from deployctl.cli.options import json_option
from deployctl.cli.output import echo_json


@click.group()
def image() -> None:
    """Build the simulator image and base images; inspect and slim engine images.

    \b
    Examples:
      deployctl image build-sim
      deployctl image inspect deployctl/tgi-sim:0.1.0 --top 5
    """


@image.command("build-sim")
@click.option("--base-image", help="Base with python3 (default: a local Debian base, else python:3.11-slim).")
@click.option("-t", "--tag", default=None, help="Tag (default: deployctl/tgi-sim:VERSION-SOURCES).")
@json_option
def build_sim(base_image: str | None, tag: str | None, as_json: bool) -> None:
    """Build the protocol simulator image used by `up --simulate` (it speaks each engine's API).

    \b
    Example:
      deployctl image build-sim --base-image deployctl/debian-base:bookworm
    """
    from deployctl.ops import imaging

    built = imaging.build_sim(base_image=base_image, tag=tag, progress=output.lines(enabled=not as_json, indent="  "))
    _built(built, as_json)


def _built(built: Any, as_json: bool) -> None:
    if as_json:
        echo_json(built)
    else:
        click.echo(f"built {built.tag} ({built.size / 1e6:.0f} MB) from {built.base}")


@image.command("build-exporter")
@click.option("--base-image", help="Base with the python3 deployctl runs on (default: as build-sim's).")
@click.option("-t", "--tag", default=None, help="Tag (default: deployctl/gpu-exporter:VERSION).")
@json_option
def build_exporter(base_image: str | None, tag: str | None, as_json: bool) -> None:
    """Build the GPU exporter's image (the monitoring profile's gpu-exporter service, the chart's DaemonSet)
    from the Python packages deployctl runs with: nothing is downloaded.

    \b
    Example:
      deployctl image build-exporter --base-image deployctl/debian-base:bookworm
    """
    from deployctl.ops import imaging

    built = imaging.build_exporter(
        base_image=base_image, tag=tag, progress=output.lines(enabled=not as_json, indent="  ")
    )
    _built(built, as_json)


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
    from deployctl.ops import imaging

    built = imaging.build_base(tag=tag, suite=suite, progress=output.lines(indent="  "))
    _built(built, as_json)


@image.command("inspect")
@click.argument("image_name", metavar="IMAGE")
@click.option("--top", default=12, show_default=True, help="How many of the largest folders to show.")
@json_option
def inspect(image_name: str, top: int, as_json: bool) -> None:
    """Layers (size, command), bytes wasted by later layers, and the largest folders.

    \b
    Example:
      deployctl image inspect ghcr.io/huggingface/text-generation-inference:3.3.4
    """
    from deployctl.ops import imaging

    result = imaging.inspect(image_name)
    if as_json:
        echo_json(result.as_dict())
        return
    from rich.table import Table

    console = output.console()
    table = Table(
        title=f"{output.cell(image_name)}: {result.size / 1e6:,.0f} MB, {len(result.layers)} layers, "
        f"{result.wasted / 1e6:,.1f} MB wasted by later layers"
    )
    for col, just in (
        ("#", "right"),
        ("size", "right"),
        ("wasted", "right"),
        ("files", "right"),
        ("created by", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for layer in result.layers:
        table.add_row(
            str(layer.index),
            f"{layer.size / 1e6:,.1f} MB",
            f"{layer.wasted / 1e6:,.1f} MB" if layer.wasted else "-",
            str(layer.files),
            output.cell(layer.created_by),  # from the image: escaped, never markup
        )
    console.print(table)
    dirs = Table(title="largest folders")
    dirs.add_column("folder")
    dirs.add_column("size", justify="right")
    for path, size in result.largest_dirs(top=top):
        dirs.add_row(output.cell(path), f"{size / 1e6:,.1f} MB")
    console.print(dirs)


@image.command("slim")
@click.argument("source", metavar="SOURCE")
@click.option(
    "--profile", "profile_name", required=True, help="A built-in profile (tgi-3.3-gptq-ada) or a profile .yaml."
)
@click.option("-t", "--tag", required=True, help="Tag for the slimmed image (set only after verification passes).")
@click.option("--dry-run", is_flag=True, help="Report what would go and what it weighs; build nothing.")
@json_option
def slim(source: str, profile_name: str, tag: str, dry_run: bool, as_json: bool) -> None:
    """Remove what a profile names, flatten to one layer, verify inside the image, then tag.

    \b
    Example:
      deployctl image slim ghcr.io/huggingface/text-generation-inference:3.3.4 --profile tgi-3.3-gptq-ada -t tgi:3.3.4-slim
    """
    from deployctl.ops import imaging

    result = imaging.slim(
        source, profile=profile_name, tag=tag, dry_run=dry_run, progress=output.lines(enabled=not as_json, indent="  ")
    )
    if as_json:
        echo_json(result.as_dict())
        return
    p = result.plan
    for g in p.groups:
        click.echo(f"{g.name:55s} {g.bytes / 1e6:10,.1f} MB  {g.files:6d} files  ({g.why})")
    click.echo(f"{'total removed':55s} {p.bytes / 1e6:10,.1f} MB of {p.size_before / 1e6:,.1f} MB")
    if dry_run:
        click.echo("dry run: nothing was built")
        return
    assert result.size_after is not None
    click.echo(
        f"tagged {result.tag}: {p.size_before / 1e6:,.1f} MB -> {result.size_after / 1e6:,.1f} MB "
        f"({result.size_after / p.size_before:.2f}), one layer, every check passed"
    )
