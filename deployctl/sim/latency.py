"""The simulator's latency model and its deterministic text."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")
WORDS = [
    "the",
    "model",
    "answers",
    "every",
    "question",
    "with",
    "care",
    "and",
    "checks",
    "each",
    "fact",
    "before",
    "it",
    "speaks",
    "about",
    "power",
    "memory",
    "latency",
    "tokens",
    "batches",
    "queues",
    "shards",
    "weights",
    "cache",
    "kernels",
    "prefill",
    "decode",
    "throughput",
    "requests",
    "latency",
    "budget",
    "hospital",
    "bank",
    "server",
    "room",
    "cooling",
    "workstation",
]
EOS_ID = 2


@dataclass(frozen=True)
class LatencyModel:
    """Time to first token = base + prompt tokens / prefill rate; inter-token latency grows with streams."""

    ttft_base_ms: float = 20.0
    prefill_tokens_per_s: float = 10_000.0
    itl_ms: float = 10.0
    itl_per_stream_ms: float = 0.2

    def ttft_s(self, prompt_tokens: int) -> float:
        return self.ttft_base_ms / 1000 + prompt_tokens / self.prefill_tokens_per_s

    def itl_s(self, streams: int) -> float:
        return (self.itl_ms + self.itl_per_stream_ms * max(0, streams - 1)) / 1000


def count_tokens(text: str) -> int:
    """Give the simulator's token count of a text: one per word or punctuation mark."""
    return len(_TOKEN.findall(text))


def tokenize(text: str) -> list[tuple[int, str, int, int]]:
    """Give (id, text, start, stop) per token, as TGI's /tokenize does."""
    return [(_word_id(m.group()), m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _word_id(word: str) -> int:
    return 10 + int.from_bytes(hashlib.blake2b(word.encode(), digest_size=3).digest(), "big") % 32000


def natural_length(prompt: str, seed: int | None) -> int:
    """Give how many tokens the 'model' says before its end-of-sequence token (16-63)."""
    return 16 + _digest(prompt, seed) % 48


def _digest(prompt: str, seed: int | None) -> int:
    h = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(h[:8], "big")


def token(prompt: str, seed: int | None, i: int) -> tuple[int, str]:
    """Give the i-th generated token (id, text): the same prompt and seed always give the same text."""
    word = WORDS[(_digest(prompt, seed) + i * 7) % len(WORDS)]
    return _word_id(word), " " + word
