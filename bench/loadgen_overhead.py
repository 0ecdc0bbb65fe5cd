#!/usr/bin/env python3
"""The highest request rate deployctl's load generator sustains against a zero-latency simulator,
compared in the same run with guidellm (another load generator) on the same simulator.

Both send streamed chat requests (16-token prompts, 4 output tokens) on a Poisson/constant
schedule at increasing rates. A rate is "sustained" when at least 90% of it is achieved with no
errors. The simulator runs in its own process; on a 2-core machine the generator gets the other
core. guidellm: set GUIDELLM=/path/to/guidellm (it is found on PATH otherwise); it needs a
tokenizer, so a tiny word-level one is built with guidellm's own `tokenizers`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from deployctl.probe import load
from deployctl.probe.stats import Slo, summarize

RATES = [100, 200, 400, 800, 1600, 3200, 6400]
SECONDS_PER_LEVEL = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIM_LOAD_SECONDS": "0",
        "SIM_TTFT_BASE_MS": "0",
        "SIM_ITL_MS": "0",
        "SIM_ITL_PER_STREAM_MS": "0",
        "SIM_PREFILL_TOKENS_PER_S": "1e12",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployctl.sim",
            "--port",
            str(port),
            "--hostname",
            "127.0.0.1",
            "--max-concurrent-requests",
            "100000",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the simulator did not start")


def ours(url: str, rate: int) -> tuple[float, float, int]:
    w = load.Workload(endpoint=url, prompt_tokens=16, output_tokens=4, api="chat")
    n = rate * SECONDS_PER_LEVEL
    results, span, _ = asyncio.run(load.open_loop(w, rate, n))
    s = summarize("open", rate, results, span, Slo())
    return s.requests_per_s, s.send_lag_ms.p99 or 0.0, sum(s.errors.values())


def tokenizer_for(guidellm: str, where: Path) -> None:
    python = Path(guidellm).read_text().splitlines()[0].removeprefix("#!").strip()
    code = (
        "import sys\nfrom tokenizers import Tokenizer, models, pre_tokenizers\n"
        "from transformers import PreTrainedTokenizerFast\n"
        "vocab = {'[UNK]': 0, '</s>': 1}\n"
        "for w in 'patient record claim ledger policy account transfer review summary request approval audit'.split():\n"
        "    vocab[w] = len(vocab)\n"
        "t = Tokenizer(models.WordLevel(vocab=vocab, unk_token='[UNK]'))\n"
        "t.pre_tokenizer = pre_tokenizers.Whitespace()\n"
        "PreTrainedTokenizerFast(tokenizer_object=t, unk_token='[UNK]', eos_token='</s>').save_pretrained(sys.argv[1])\n"
    )
    subprocess.run([python, "-c", code, str(where)], check=True, capture_output=True)


def theirs(guidellm: str, url: str, rate: int, tok: Path, out: Path) -> tuple[float, int]:
    n = rate * SECONDS_PER_LEVEL
    cmd = [
        guidellm,
        "run",
        "--backend",
        f"kind=openai_http,target={url},model={tok}",
        "--profile",
        f"kind=constant,rate={rate}",
        "--constraint",
        f"kind=max_requests,count={n}",
        "--data",
        "kind=synthetic_text,prompt_tokens=16,output_tokens=4",
        "--disable-console",
        "--output",
        f"kind=json,path={out}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    b = json.loads(out.read_text())["benchmarks"][0]
    totals = b["metrics"]["request_totals"]
    state = b["scheduler_state"]
    span = state["end_requests_time"] - state["start_requests_time"]
    return totals["successful"] / span, totals["errored"] + totals["incomplete"]


def _still_going(rows: list[tuple[int, float, int]]) -> bool:
    """Keep raising the rate until two levels in a row are not sustained."""
    return not (len(rows) >= 2 and all(a < 0.9 * r or e for r, a, e in rows[-2:]))


def highest(rows: list[tuple[int, float, int]]) -> int:
    ok = [rate for rate, achieved, errors in rows if achieved >= 0.9 * rate and errors == 0]
    return max(ok) if ok else 0


def main() -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = start_sim(port)
    guidellm = os.environ.get("GUIDELLM") or shutil.which("guidellm")
    mine: list[tuple[int, float, int]] = []
    other: list[tuple[int, float, int]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if guidellm:
                tokenizer_for(guidellm, Path(tmp) / "tok")
            for rate in RATES:
                line = f"rate {rate:5d}/s"
                if _still_going(mine):
                    achieved, lag, errors = ours(url, rate)
                    mine.append((rate, achieved, errors))
                    line += f"  deployctl: {achieved:7.1f}/s (send lag p99 {lag:6.1f} ms, errors {errors})"
                if guidellm and _still_going(other):
                    g, gerr = theirs(guidellm, url, rate, Path(tmp) / "tok", Path(tmp) / f"g{rate}.json")
                    other.append((rate, g, gerr))
                    line += f"   guidellm: {g:7.1f}/s (errors {gerr})"
                print(line, flush=True)
    finally:
        sim.terminate()
        sim.wait(10)
    a = highest(mine)
    print(f"highest sustained rate, deployctl: {a}/s")
    if guidellm:
        b = highest(other)
        print(f"highest sustained rate, guidellm:  {b}/s")
        print(f"ratio deployctl / guidellm: {a / b:.2f}" if b else "guidellm sustained none of the rates")
    else:
        print("guidellm not found (pip install guidellm in another venv, then GUIDELLM=...): no comparison this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
