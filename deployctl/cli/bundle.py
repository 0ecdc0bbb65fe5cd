"""`deployctl bundle keygen | create | verify | install`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deployctl.cli import output
from deployctl.cli.options import folder_option, json_option, load_spec, spec_options
from deployctl.cli.output import echo_json
from deployctl.terminal import shown


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
      deployctl bundle diff llm.tar.parts.json llm.bundle.parts.json
    """


def _bars() -> output.Progress:
    """Progress per item (bytes) on stderr: bars on a terminal, a line every few seconds otherwise."""
    return output.Progress(unit="bytes")


@bundle.command()
@click.argument("name", type=click.Path(path_type=Path, dir_okay=False))
def keygen(name: Path) -> None:
    """Write an ed25519 key pair: NAME (private, mode 0600) and NAME.pub.

    \b
    Example:
      deployctl bundle keygen site-key
    """
    from deployctl.ops import bundling

    fp = bundling.keygen(name)
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
    "--target",
    type=click.Choice(["compose", "helm"]),
    default="compose",
    show_default=True,
    help="helm: also carry the Helm chart (stack/chart/NAME-VERSION.tgz); see docs/kubernetes.md.",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True),
    help="A delta: leave out every layer, model file and wheel this earlier bundle (or its manifest.json) has.",
)
@click.option(
    "--revision",
    type=click.IntRange(1, 10**18),
    help="The bundle's revision (signed; sites refuse an older or equal one). Default: now, as YYYYMMDDHHMMSSmmm (UTC).",
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
    target: str,
    base: Path | None,
    revision: int | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Gather images, weights, the stack (or Helm chart) and deployctl's wheels into one bundle.

    \b
    Examples:
      deployctl bundle create -o llm.bundle --model ./models/my-model-gptq --gpu-model rtx4090 --sign site-key
      deployctl bundle create -o llm.tar --split 4G --simulate --model ./m --wheels none --sign site-key
    """
    from deployctl.ops import bundling

    spec = load_spec(kwargs)
    with _bars() as bars:
        made = bundling.create(
            spec,
            output=output,
            images=list(images),
            sign_key=sign_key,
            wheels=wheels,
            simulate=simulate,
            as_tar=as_tar,
            split=split,
            progress=bars,
            target=target,
            base=base,
            revision=revision,
        )
    if as_json:
        echo_json(made)
        return
    if not made.signed:
        click.echo(
            "warning: the bundle is NOT signed (pass --sign KEY): sites will have to skip the signature check", err=True
        )
    click.echo(
        f"wrote {_where(made.path, made.parts)}: revision {made.revision}, {made.entries} files, "
        f"{made.size / 1e9:.2f} GB, manifest sha256 {made.manifest_sha256[:16]}"
    )


def _where(path: Path, parts: list[str]) -> str:
    """Give what `bundle create` wrote: the folder or .tar, or its parts (1 part, 3 parts a..c)."""
    if not parts:
        return shown(path, limit=None)
    if len(parts) == 1:
        return f"1 part {parts[0]}"
    return f"{len(parts)} parts {parts[0]}..{parts[-1]}"


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
    """Check completeness, every checksum and the signature (each byte read once).

    \b
    Examples:
      deployctl bundle verify llm.bundle.parts.json --pubkey site-key.pub
      deployctl bundle verify llm.tar.parts.json --pubkey site-key.pub --json
    """
    from deployctl.ops import bundling

    _warn_insecure(insecure)
    with _bars() as bars:
        result = bundling.verify(path, pubkey=pubkey, insecure=insecure, progress=bars)
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"OK: {shown(result.name)} revision {result.revision} (created {result.created_at}), "
            f"{result.entries} files, {result.bytes / 1e9:.2f} GB checked, {result.trust}"
        )


@bundle.command()
@click.argument("path", type=click.Path(path_type=Path))
@pubkey_option
@insecure_option
@folder_option("--target", default=Path("/srv/deployctl"), help="Where models/, the stack and deployctl.yaml go.")
@click.option("--simulate", is_flag=True, help="Render the stack with the simulator (a rehearsal without GPUs).")
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True),
    help="For a delta whose base is not installed at --target: the base bundle to take the rest from.",
)
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="Install a bundle whose revision is not newer than the one installed (going back on purpose).",
)
@json_option
def install(
    path: Path,
    pubkey: Path | None,
    insecure: bool,
    target: Path,
    simulate: bool,
    base: Path | None,
    allow_downgrade: bool,
    as_json: bool,
) -> None:
    """Verify, then docker load the images, put the model in place and render the stack.

    Interrupted (Ctrl-C, kill, disk full, a pulled USB stick)? Run it again: it finishes the job.

    \b
    Example:
      sudo deployctl bundle install llm.tar.parts.json --pubkey site-key.pub --target /srv/deployctl
    """
    from deployctl.ops import bundling

    _warn_insecure(insecure)
    with _bars() as bars:
        result = bundling.install(
            path,
            target=target,
            pubkey=pubkey,
            insecure=insecure,
            simulate=simulate,
            progress=bars,
            say=bars.say if not as_json else None,
            base=base,
            allow_downgrade=allow_downgrade,
        )
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"installed revision {result.revision} into {shown(result.target, None)}: model {shown(result.model_dir, None)}, "
        f"images {shown(', '.join(result.images), None)}"
    )
    if result.downgrade:
        click.echo(f"note: revision {result.replaced_revision} was newer; it was replaced (--allow-downgrade)")
    click.echo(f"next: deployctl up -f {result.spec}" + (" --simulate" if simulate else ""))


@bundle.command()
@click.argument("old", type=click.Path(path_type=Path, exists=True))
@click.argument("new", type=click.Path(path_type=Path, exists=True))
@click.option("--all", "show_all", is_flag=True, help="List unchanged items too.")
@json_option
def diff(old: Path, new: Path, show_all: bool, as_json: bool) -> None:
    """Show what upgrading from bundle OLD to NEW changes, and what a delta (--base OLD) carries.

    \b
    Example:
      deployctl bundle diff llm.tar.parts.json llm.bundle.parts.json --all
    """
    from deployctl.ops import bundling

    result = bundling.diff(old, new)
    if as_json:
        echo_json(result)
        return
    for c in result.changes:
        if show_all or c.change != "same":
            click.echo(f"{c.change:8} {c.kind:10} {shown(c.name):60} {c.bytes / 1e6:10.1f} MB")
    click.echo(
        f"a delta of {shown(new, None)} over {shown(old, None)} carries {result.delta_bytes / 1e6:.1f} MB "
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
    from deployctl.ops import bundling

    _warn_insecure(insecure)
    with _bars() as bars:
        result = bundling.export_images(
            path,
            output=output,
            pubkey=pubkey,
            insecure=insecure,
            progress=bars,
            say=bars.say if not as_json else None,
            base=base,
        )
    if as_json:
        echo_json(result)
        return
    click.echo(f"wrote {result.path}: {', '.join(result.images)}, {result.bytes / 1e6:.1f} MB, {result.trust}")
    click.echo(f"next, on each node: sudo ctr -n k8s.io images import {result.path}")
