"""The suite reads nothing outside the repository: reference data lives in tests/data."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parents[1]
# A path that climbs out of the repository: ../shared, parents[3] and beyond from a file in tests/x/.
OUTSIDE = re.compile(r"""\.\./shared|["']shared["']|parents\[(?:[3-9]|\d\d)\]""")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_reference_data_is_in_the_repository_with_its_source() -> None:
    data = TESTS / "data"
    for name in ("tgi/openapi.json", "tgi/launcher-flags.md", "vllm/serve-flags.md", "vllm/api.md"):
        assert (data / name).is_file(), name
        assert f"`{name}`" in (data / "README.md").read_text(), f"{name} has no source in tests/data/README.md"
