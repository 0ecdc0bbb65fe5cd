"""`deployctl bundle keygen | create | verify | install`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from deployctl.cli.options import echo_json, json_option, load_spec, spec_options


@click.group()
def bundle() -> None:
    """Offline bundles: images, weights, stack and wheels, signed and checksummed.

    \b
    Examples:
      deployctl bundle keygen site-key
      deployctl bundle create -o llm.bundle --sign site-key --split 4G --model /srv/models/Qwen2.5-32B-GPTQ
      deployctl bundle verify llm.bundle.parts.json --pubkey site-key.pub
      sudo deployctl bundle install llm.bundle.parts.json --pubkey site-key.pub --target /srv/deployctl
      deployctl bundle create -o llm-v2.bundle --sign site-key --base llm.bundle.parts.json --model /srv/models/Qwen2.5-32B-GPTQ
      deployctl bundle diff llm.bundle.parts.json llm-v2.bundle
    """


class _Bars:
    """Progress bars per item (bytes, rate, time left) on stderr; quiet when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def __call__(self, item: str, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if item not in self.tasks:
            self.tasks[item] = self.progress.add_task(item[-48:], total=total)
        self.progress.update(self.tasks[item], completed=done, total=total)

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            click.echo(text, err=True)


@bundle.command()
@click.argument("name", type=click.Path(path_type=Path, dir_okay=False))
def keygen(name: Path) -> None:
    """Write an ed25519 key pair: NAME (private, mode 0600) and NAME.pub."""
    from deployctl.bundle import signing

    fp = signing.keygen(name, name.with_name(name.name + ".pub"))
    click.echo(f"wrote {name} (keep it secret) and {name}.pub (give it to the site): {fp}")


@bundle.command()
@spec_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The bundle: a folder, or NAME.tar with --tar/--split.",
)
@click.option("--image", "images", multiple=True, help="Image(s) to carry (default: the spec's engine image).")
@click.option("--simulate", is_flag=True, help="Carry the simulator image and a simulated stack (for rehearsals).")
@click.option(
    "--sign", "sign_key", type=click.Path(path_type=Path, dir_okay=False), help="Private key from `bundle keygen`."
)
@click.option("--tar", "as_tar", is_flag=True, help="Write one .tar instead of a folder.")
@click.option("--split", help="Cut the .tar into parts of at most SIZE (e.g. 4G for FAT32, 4480M for DVDs).")
@click.option(
    "--wheels", default="auto", show_default=True, help="'auto' (build and download), 'none', or a folder of wheels."
)
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True),
    help="A delta: leave out every layer and model file this earlier bundle (or its manifest.json) has.",
)
@json_option
def create(
    output: Path,
    images: tuple[str, ...],
    simulate: bool,
    sign_key: Path | None,
    as_tar: bool,
    split: str | None,
    wheels: str,
    base: Path | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Gather images, weights, the stack and deployctl's wheels into one bundle."""
    from deployctl import deploy
    from deployctl.bundle import create as core
    from deployctl.bundle.format import parse_size
    from deployctl.engines.simulator import SIM_IMAGE

    spec = load_spec(kwargs)
    size = parse_size(split) if split else None
    plan = deploy.make_plan(spec, simulate=simulate)
    chosen = list(images) or [SIM_IMAGE if simulate else spec.image]
    with _Bars(not as_json) as bars:
        made = core.create(spec, plan, output, chosen, sign_key, wheels, simulate, as_tar, size, bars, base=base)
    if as_json:
        echo_json({**made.__dict__, "path": str(made.path)})
        return
    if not made.signed:
        click.echo(
            "warning: the bundle is NOT signed (pass --sign KEY): sites will have to skip the signature check", err=True
        )
    where = f"{len(made.parts)} parts {made.parts[0]}..{made.parts[-1]}" if made.parts else str(made.path)
    click.echo(
        f"wrote {where}: {made.entries} files, {made.size / 1e9:.2f} GB, manifest sha256 {made.manifest_sha256[:16]}"
    )


pubkey_option = click.option(
    "--pubkey", type=click.Path(path_type=Path, dir_okay=False), help="The sender's public key (NAME.pub)."
)
insecure_option = click.option(
    "--insecure-skip-signature",
    "insecure",
    is_flag=True,
    help="Accept an unsigned or unverifiable bundle (a warning is printed).",
)


def _warn_insecure(insecure: bool) -> None:
    if insecure:
        click.echo("WARNING: --insecure-skip-signature: the bundle's origin is NOT verified", err=True)


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path))
@pubkey_option
@insecure_option
@json_option
def verify(path: Path, pubkey: Path | None, insecure: bool, as_json: bool) -> None:
    """Check completeness, every checksum and the signature (each byte read once)."""
    from deployctl.bundle import install as core

    _warn_insecure(insecure)
    with _Bars(not as_json) as bars:
        result = core.verify(path, pubkey, insecure, bars)
    if as_json:
        echo_json(result.__dict__)
    else:
        click.echo(f"OK: {result.name}, {result.entries} files, {result.bytes / 1e9:.2f} GB checked, {result.trust}")


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path))
@pubkey_option
@insecure_option
@click.option(
    "--target",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/srv/deployctl"),
    show_default=True,
    help="Where models/, the stack and deployctl.yaml go.",
)
@click.option("--simulate", is_flag=True, help="Render the stack with the simulator (a rehearsal without GPUs).")
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True),
    help="For a delta whose base is not installed at --target: the base bundle to take the rest from.",
)
@json_option
def install(
    path: Path, pubkey: Path | None, insecure: bool, target: Path, simulate: bool, base: Path | None, as_json: bool
) -> None:
    """Verify, then docker load the images, put the model in place and render the stack.

    Interrupted (Ctrl-C, kill, disk full, a pulled USB stick)? Run it again: it finishes the job.
    """
    from deployctl.bundle import install as core

    _warn_insecure(insecure)
    with _Bars(not as_json) as bars:
        result = core.install(
            path, target, pubkey, insecure, simulate, bars, say=bars.say if not as_json else None, base=base
        )
    if as_json:
        echo_json(result.__dict__)
        return
    click.echo(f"installed into {result.target}: model {result.model_dir}, images {', '.join(result.images)}")
    click.echo(f"next: deployctl up -f {result.spec}" + (" --simulate" if simulate else ""))


@bundle.command()
@click.argument("old", type=click.Path(path_type=Path, exists=True))
@click.argument("new", type=click.Path(path_type=Path, exists=True))
@click.option("--all", "show_all", is_flag=True, help="List unchanged items too.")
@json_option
def diff(old: Path, new: Path, show_all: bool, as_json: bool) -> None:
    """Show what upgrading from bundle OLD to NEW changes, and what a delta (--base OLD) carries."""
    from deployctl.bundle import diff as core

    result = core.diff(old, new)
    if as_json:
        echo_json({**result.__dict__, "changes": [c.__dict__ for c in result.changes]})
        return
    for c in result.changes:
        if show_all or c.change != "same":
            click.echo(f"{c.change:8} {c.kind:10} {c.name:60} {c.bytes / 1e6:10.1f} MB")
    click.echo(
        f"a delta of {new} over {old} carries {result.delta_bytes / 1e6:.1f} MB "
        f"of {result.full_bytes / 1e6:.1f} MB (uncompressed)"
    )


@bundle.command("export-images")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The archive.")
@pubkey_option
@insecure_option
@click.option(
    "--base", type=click.Path(path_type=Path, exists=True), help="For a delta: the base bundle with the other layers."
)
@json_option
def export_images(
    path: Path, output: Path, pubkey: Path | None, insecure: bool, base: Path | None, as_json: bool
) -> None:
    """Write the bundle's images, verified, as one archive for Kubernetes nodes (or docker load).

    Then, on each node: sudo ctr -n k8s.io images import images.tar

    \b
    Example:
      deployctl bundle export-images llm.bundle.parts.json -o images.tar --pubkey site-key.pub
    """
    from deployctl.bundle import install as core

    _warn_insecure(insecure)
    with _Bars(not as_json) as bars:
        result = core.export_images(
            path, output, pubkey, insecure, bars, say=bars.say if not as_json else None, base=base
        )
    if as_json:
        echo_json(result.__dict__)
        return
    click.echo(f"wrote {result.path}: {', '.join(result.images)}, {result.bytes / 1e6:.1f} MB, {result.trust}")
    click.echo(f"next, on each node: sudo ctr -n k8s.io images import {result.path}")
