"""Parse command lines with vLLM's own `vllm serve` parser and engine-config check; print what each gave.

Run with the real engine's Python: `check_args.py OUT` reads a JSON list of {"name", "args", "env"} on
stdin (args: what follows `vllm serve`) and writes a JSON list of {"name", "ok", "error", "flags"} to OUT
(vLLM logs on stdout).

For each command line, as `vllm serve` does it (vLLM 0.32.0 entrypoints/cli/main.py and serve.py):
the `serve` subparser built by entrypoints/launchers/cli_args.py `make_arg_parser` parses the
arguments (an unknown flag or a bad value exits the parser), `validate_parsed_serve_args` runs its
checks, then `AsyncEngineArgs.from_cli_args(args).create_engine_config()` builds the whole engine
configuration: model, cache (KV dtype), parallel (tensor parallel size), scheduler and quantization
checks run there, everything short of loading weights. The platform is the CPU build's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys


def check(args: list[str], env: dict[str, str]) -> str | None:
    """Give None when vLLM accepts the command line, else what it said."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.usage.usage_lib import UsageContext
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        top = FlexibleArgumentParser(prog="vllm")
        sub = top.add_subparsers(dest="subparser")
        make_arg_parser(sub.add_parser("serve"))
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parsed = top.parse_args(["serve", *args])
        except SystemExit:
            return "the parser refused: " + errors.getvalue().strip().splitlines()[-1]
        if getattr(parsed, "model_tag", None):
            parsed.model = parsed.model_tag
        try:
            validate_parsed_serve_args(parsed)
            AsyncEngineArgs.from_cli_args(parsed).create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        except Exception as exc:  # any refusal of the engine's checks is the answer we report
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> int:
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        error = check(case["args"], case.get("env", {}))
        flags = [a for a in case["args"] if a.startswith("--")]
        results.append({"name": case["name"], "ok": error is None, "error": error, "flags": flags})
    with open(sys.argv[1], "w") as out:
        json.dump(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
