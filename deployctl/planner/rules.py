"""Each engine's start-up memory rule, selected by the spec's engine name and the release its image runs."""

from __future__ import annotations

from deployctl import engines
from deployctl.engines import tgi, vllm
from deployctl.engines.memory import EngineRules, rule_for_image
from deployctl.errors import InputError

# engine -> its rules, one per release range, oldest first (in engines/<name>.py).
RULES = {"tgi": tgi.RELEASE_RULES, "vllm": vllm.RELEASE_RULES}


def rules_for(engine: str, image: str | None = None, *, unverified: bool = False) -> EngineRules:
    """Give the memory rule of the named engine at the release `image` runs (default: its pinned image).

    InputError names the supported releases when the image's has no rule, unless `unverified` asks for
    the newest rule as a guess.
    """
    if engine not in RULES:
        raise InputError(f"engine: {engine!r} is not supported", f"allowed: {', '.join(RULES)}")
    return rule_for_image(RULES[engine], image or engines.get(engine).default_image, unverified=unverified)
