"""`image slim`: remove what a profile names, flatten to one layer, verify inside the image, then tag."""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployctl import __version__, failpoints, templating
from deployctl.errors import DeployctlError, InputError
from deployctl.images.layers import ImageScan, scan
from deployctl.progress import Progress, each_line, quiet


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    why: str
    remove: list[str] = Field(min_length=1)
    estimate_bytes: int | None = None


class Keep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    why: str


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    command: list[str] = Field(min_length=1)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    image_family: str
    # Globs that every image of the family has: a source without them is refused before anything is built.
    identify: list[str] = []
    estimate_image_bytes: int | None = None
    groups: list[Group]
    keep: list[Keep] = []
    verify: list[Check] = Field(min_length=1)


def builtin_profiles() -> list[str]:
    folder = resources.files("deployctl").joinpath("images/profiles")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str) -> Profile:
    """Give a built-in profile by name, or one from a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text, where = path.read_text(), str(path)
    elif name_or_path in builtin_profiles():
        text = resources.files("deployctl").joinpath(f"images/profiles/{name_or_path}.yaml").read_text()
        where = name_or_path
    else:
        raise InputError(
            f"slim profile {name_or_path!r} is unknown", f"built in: {', '.join(builtin_profiles())}, or a .yaml path"
        )
    try:
        return Profile.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[:3]
        raise InputError(f"{where}: not a valid slim profile: {' '.join(first)}") from None


def _glob(pattern: str) -> str:
    """A path glob as a regular expression: * and ? stay inside one folder, ** spans folders."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out


@cache
def _regex(*patterns: str) -> re.Pattern[str]:
    """One compiled expression matching any of the globs (none: matches nothing)."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("(?:" + "|".join(_glob(p) for p in patterns) + r")\Z")


def matches(pattern: str, path: str) -> bool:
    return bool(_regex(pattern).match(path))


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class GroupPlan:
    name: str
    why: str
    roots: list[str] = field(default_factory=list)  # what `rm -rf` gets: the highest matching paths
    files: int = 0
    bytes: int = 0
    estimate_bytes: int | None = None


@dataclass
class SlimPlan:
    source: str
    profile: str
    size_before: int
    groups: list[GroupPlan]

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)

    def roots(self) -> list[str]:
        return sorted({r for g in self.groups for r in g.roots})

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "profile": self.profile,
            "size_before": self.size_before,
            "removed_bytes": self.bytes,
            "groups": [
                {k: v for k, v in g.__dict__.items() if k != "roots"} | {"paths": len(g.roots)} for g in self.groups
            ],
        }


def check_family(image: ImageScan, profile: Profile) -> None:
    """Refuse an image the profile was not written for: each of the profile's `identify` globs must match."""
    if not profile.identify:
        return
    present: set[str] = set()
    for path in image.final:
        present.update(_ancestors(path))
    for pattern in profile.identify:
        rx = _regex(pattern)
        if not any(rx.match(p) for p in present):
            raise InputError(
                f"{image.image} is not a {profile.image_family} image (it has no {pattern}): "
                f"profile {profile.name} expects one",
                "choose the profile written for this image, or write one (--profile FILE.yaml)",
            )


def plan(image: ImageScan, profile: Profile) -> SlimPlan:
    """Give what each group removes from the image's final filesystem; refuse a removal that hits a kept path."""
    check_family(image, profile)
    kept = _regex(*(k.path for k in profile.keep))
    claimed: set[str] = set()
    groups = []
    for g in profile.groups:
        removal = _regex(*g.remove)
        gp = GroupPlan(g.name, g.why, estimate_bytes=g.estimate_bytes)
        roots: set[str] = set()
        for path, size in image.final.items():
            if path in claimed:
                continue
            ancestors = _ancestors(path)
            root = next((a for a in ancestors if removal.match(a)), None)
            if root is None:
                continue
            # Kept: the file itself, or a folder between the removal root and it (a folder above the
            # root, such as a kept package holding a __pycache__, does not stop the removal).
            below_root = [a for a in ancestors if len(a) >= len(root)]
            if any(kept.match(a) for a in below_root):
                keep = next(k for k in profile.keep if any(matches(k.path, a) for a in below_root))
                raise InputError(
                    f"profile {profile.name}: group {g.name!r} would remove {path}, which must stay: {keep.why}"
                )
            roots.add(root)
            claimed.add(path)
            gp.files += 1
            gp.bytes += size
        gp.roots = sorted(r for r in roots if not any(r.startswith(o + "/") for o in roots))
        groups.append(gp)
    return SlimPlan(image.image, profile.name, image.size, groups)


def _env_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def dockerfile(source: str, profile: str, config: dict[str, Any]) -> str:
    """Give the slim Dockerfile: remove in a stage, copy the result into one layer, keep the configuration."""
    pairs = [item.split("=", 1) for item in config.get("Env") or []]
    return templating.render(
        "slim.Dockerfile.j2",
        version=__version__,
        source=source,
        profile=profile,
        env=[(k, _env_value(v)) for k, v in pairs],
        workdir=config.get("WorkingDir") or None,
        user=config.get("User") or None,
        exposed=sorted((config.get("ExposedPorts") or {}).keys()),
        labels=sorted((config.get("Labels") or {}).items()),
        entrypoint=config.get("Entrypoint"),
        cmd=config.get("Cmd"),
    )


@dataclass
class SlimResult:
    tag: str | None
    image_id: str | None
    plan: SlimPlan
    size_after: int | None
    checks: list[tuple[str, bool, str]]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "image_id": self.image_id,
            "size_after": self.size_after,
            "dry_run": self.dry_run,
            "checks": [{"name": n, "ok": ok, "output": out} for n, ok, out in self.checks],
            **self.plan.as_dict(),
        }


class VerificationFailed(DeployctlError):
    exit_code = 1


def run_check(image_id: str, check: Check, timeout: int = 120) -> tuple[bool, str]:
    """Run one verification command in a throwaway container of the image (no network); the container always goes."""
    from deployctl import docker

    done = docker.run_once(image_id, entrypoint=[check.command[0]], command=check.command[1:], timeout=timeout)
    return done.ok, done.output[-300:] if done.ok else done.output[:300]


def slim(
    source: str, profile_name: str, tag: str, dry_run: bool = False, progress: Progress | None = None
) -> SlimResult:
    """Slim `source` by the profile; tag the result `tag` only if every verification passes."""
    from deployctl import docker
    from deployctl.images.build import build

    say = progress or quiet
    profile = load_profile(profile_name)
    if ":" not in tag.rsplit("/", 1)[-1]:
        tag += ":latest"
    say(f"reading {source}'s layers")
    image_scan = scan(source)
    slim_plan = plan(image_scan, profile)
    if dry_run:
        return SlimResult(None, None, slim_plan, None, [], True)
    config = docker.image(source).config
    temporary = f"deployctl-slim-tmp:{uuid.uuid4().hex[:12]}"
    tagged = False
    existing = docker.image_ids()
    steps: list[str] = []

    def watch(line: str) -> None:
        found = _STEP.match(line.strip())
        if found:
            steps.append(found.group(1))
        say(line)
        if _FLATTEN.search(line):
            failpoints.hit("slim-flatten")  # the one-layer copy begins (tests interrupt the build here)

    try:
        with tempfile.TemporaryDirectory(prefix="deployctl-slim-") as tmp:
            ctx = Path(tmp)
            (ctx / "removals.txt").write_text("".join(f"{p}\n" for p in slim_plan.roots()))
            (ctx / "Dockerfile").write_text(dockerfile(source, profile.name, config))
            image_id = build(ctx, temporary, {}, each_line(watch))
        checks = []
        for check in profile.verify:
            ok, out = run_check(image_id, check)
            checks.append((check.name, ok, out))
            say(f"verify: {check.name}: {'OK' if ok else 'FAILED'}")
        failed = [c for c in checks if not c[1]]
        if failed:
            name, _, out = failed[0]
            raise VerificationFailed(f"verification '{name}' failed in the slimmed image: {out}; nothing was tagged")
        docker.tag_image(image_id, tag)
        tagged = True
        size = docker.image(image_id).size
        return SlimResult(tag, image_id, slim_plan, size, checks, False)
    finally:
        _remove(temporary, keep_image=tagged)
        _remove_intermediates(steps, existing)


# The classic builder's "---> 0123456789ab" line after each step names the image that step made.
_STEP = re.compile(r"^--->\s+([0-9a-f]{12})$")
# Its "Step 4/12 : FROM scratch" line: the second stage of slim.Dockerfile.j2, the flattening copy, begins.
_FLATTEN = re.compile(r"^Step \d+/\d+ : FROM scratch$")


def _remove(temporary: str, keep_image: bool) -> None:
    """Drop the temporary tag; without the final tag, the image goes too (nothing half-tagged stays)."""
    from deployctl import docker

    docker.remove_image(temporary, keep_untagged=keep_image)


def _remove_intermediates(steps: list[str], existing: set[str]) -> None:
    """Remove the images the build's steps made that nothing uses: the removal stage is the source's size."""
    from deployctl import docker

    docker.remove_build_intermediates(steps, existing)
