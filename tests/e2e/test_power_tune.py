"""power tune --simulate against a real `up --simulate` stack: the container's power model, end to end."""

from __future__ import annotations

import json

from helpers.loadrun import measured

from deployctl.http import request

from .conftest import Project


def test_tune_rehearses_against_a_simulated_stack_and_puts_the_caps_back(project: Project) -> None:
    up = project.run("up", "--simulate", "--sim-fault", "power-model=rtx4090")
    assert up.returncode == 0, up.stdout + up.stderr
    data = measured(
        project.run,
        "power tune --simulate --caps 450,300,250,200 --concurrency 4 --prompt-tokens 16 --output-tokens 16"
        " --settle 0 --window 3 -o tune",
    )
    assert data["simulated"] and all(r["simulated"] for r in data["rows"])
    rows = {r["cap_w"]: r for r in data["rows"]}
    # docs/power.md: decode keeps its speed down to 250 W; the memory clock falls below it.
    assert data["chosen_w"] in (250, 300) and rows[450]["mem_clock_mhz"] == 10501
    assert 200 not in rows or rows[200]["mem_clock_mhz"] < 10501
    assert rows[450]["power_w"] > rows[250]["power_w"] > 0
    status, body = request(f"{project.url}/_sim/power", 5)
    assert status == 200 and {g["limit_w"] for g in json.loads(body)["gpus"]} == {450}
    assert (project.root / "tune" / "tune.png").stat().st_size > 10_000
