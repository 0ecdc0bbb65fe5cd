"""Strict, bounded reading of files a user or a stranger hands us: YAML specs and JSON results.

Every limit here is checked before the work it bounds is done, so a hostile file costs at most
a read of `max_bytes` and a walk of `MAX_NODES` values: a YAML alias bomb, 10,000-deep nesting,
a 50 MB string or a duplicated key each give one InputError naming the file and the line.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from deployctl.errors import InputError
from deployctl.fsio import read_bounded
from deployctl.terminal import shown

__all__ = ["json_document", "read_json", "read_text", "yaml_document"]

# A spec is about 2 KB (spec.STARTER); 64 KiB leaves room for long comments. PyYAML's
# pure-Python scanner reads about 160 KB/s of dense keys on this project's shared 2-core machine
# (measured: 252 KB of `kN: [1, 2, "abc"]` lines took 1.56 s), so 64 KiB stays well under a second;
# MAX_NODES stops such a file sooner still (0.19 s, measured the same way).
SPEC_MAX_BYTES = 64 * 1024
# deployctl.yaml nests three levels (serve.port); twenty leaves room and stops recursion long
# before Python's own limit (PyYAML's composer recurses once per level).
MAX_DEPTH = 20
# An alias bomb needs many aliases (billion laughs: 9 levels x 10); a spec needs a handful.
MAX_ALIASES = 32
# Values built after expanding aliases: caps what even the allowed aliases can multiply into.
MAX_NODES = 10_000
# Bench results: a sweep of 20 levels is about 20 KB; 16 MiB is far beyond any real one.
JSON_MAX_BYTES = 16 * 1024 * 1024


def read_text(path: Path, *, max_bytes: int, what: str) -> str:
    """Give a regular file's UTF-8 text, refusing more than `max_bytes` before reading them."""
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    with contextlib.suppress(OSError):  # read_bounded names what is wrong with a path that cannot be stat'ed
        if os.stat(path).st_size > max_bytes:
            raise InputError(f"{path}: the {what} is larger than {max_bytes // 1024} KiB", "is it the right file?")
    raw = read_bounded(path, max_bytes, what)  # a regular file only: never a FIFO or a device
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


@dataclass
class YamlDocument:
    """A YAML document as plain data, the line of every key path, and the problems found on the way."""

    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, what is wrong)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses deep nesting and many aliases as it reads."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0
        self.composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:  # type: ignore[override]
        if self.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Limit(f"more than {MAX_ALIASES} aliases (*name)", mark.line + 1)
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} values", self.peek_event().start_mark.line + 1)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


class _Limit(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def yaml_document(text: str, where: str, *, max_bytes: int = SPEC_MAX_BYTES) -> YamlDocument:
    """Give the YAML `text` as plain data; a limit or a syntax error is an InputError naming the line."""
    if len(text) > max_bytes:
        raise InputError(f"{where}: larger than {max_bytes // 1024} KiB", "is it the right file?")
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(None)
        builder = _Builder(loader)
        data = builder.build(root, ())
    except _Limit as exc:
        raise InputError(f"{where}:{exc.line}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        # Where the broken construct began (an unclosed bracket) says more than where parsing gave up.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        raise InputError(
            f"{where}{line}: not valid YAML: {shown(context + ', ' if context else '')}{shown(problem)}"
        ) from None
    finally:
        loader.dispose()
    return YamlDocument(data, builder.lines, builder.problems)


class _Builder:
    """Turns composed nodes into plain data, counting every value built (aliases included)."""

    def __init__(self, loader: _BoundedLoader) -> None:
        self.loader = loader
        self.nodes = 0
        self.lines: dict[tuple[str, ...], int] = {}
        self.problems: list[tuple[int, str]] = []

    def build(self, node: Node, path: tuple[str, ...]) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} values (aliases expanded)", node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*path, str(i))] = item.start_mark.line + 1
                items.append(self.build(item, (*path, str(i))))
            return items
        assert isinstance(node, MappingNode)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise _Limit("a key must be a plain word, not a list or mapping", line)
            key = self.loader.construct_object(key_node)
            name = str(key)
            here = (*path, name)
            if name in out:
                first = self.lines.get(here)
                problem = f"{shown('.'.join(here))}: duplicate key (first given on line {first}); remove one of them"
                self.problems.append((line, problem))
                continue
            self.lines[here] = line
            out[name] = self.build(value_node, here)
        return out


def json_document(text: str, where: str, *, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Give JSON `text` as plain data, refusing oversize, deep nesting and NaN/Infinity."""
    if len(text) > max_bytes:
        raise InputError(f"{where}: larger than {max_bytes // (1024 * 1024)} MiB", "is it the right file?")

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=constant)
    except RecursionError:
        # json's C scanner guards its recursion: 10,000 nested brackets end here, not in a traceback.
        raise InputError(f"{where}: refused: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {shown(exc, 120)}") from None


def read_json(path: Path, *, what: str, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """Give a JSON file's data, read and parsed within the limits above."""
    try:
        text = read_text(path, max_bytes=max_bytes, what=what)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    return json_document(text, os.fspath(path))
