#!/usr/bin/env bash
# Install a real Docker Engine (Debian bookworm's docker.io) and Compose v2 (the
# CLI plugin from Debian trixie, fetched alone without adding trixie to sources),
# plus mmdebstrap for building base images from Debian packages; start dockerd.
# Idempotent: a step already done is skipped.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  bash "$here/apt.sh" update -q
  bash "$here/apt.sh" install -y -q --no-install-recommends "${need[@]}" iptables ca-certificates >/dev/null
fi

plugin=/usr/libexec/docker/cli-plugins/docker-compose
if ! /usr/bin/docker compose version >/dev/null 2>&1; then
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial"
  echo "deb http://deb.debian.org/debian trixie main" > "$work/trixie.list"
  opts=(-o "Dir::Etc::sourcelist=$work/trixie.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists")
  bash "$here/apt.sh" "${opts[@]}" update -q >/dev/null
  (cd "$work" && bash "$here/apt.sh" "${opts[@]}" download docker-compose >/dev/null)
  dpkg -x "$work"/docker-compose_*.deb "$work/x"
  mkdir -p "$(dirname "$plugin")"
  install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin"
  rm -rf "$work"
fi

if ! /usr/bin/docker info >/dev/null 2>&1; then
  # At the usual priority even when this installer runs niced beside the tests (.ci/run): the tests use it.
  # With no descriptor but the three: the daemon outlives this run, and one it inherited (the lock of
  # `flock /tmp/deployctl-docker.lock .ci/run`, say) would stay held for as long as it runs.
  (
    for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
    exec setsid nice -n "$(( -$(nice) ))" /usr/sbin/dockerd >/tmp/dockerd.log 2>&1 < /dev/null
  ) &
  for _ in $(seq 1 60); do
    /usr/bin/docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
/usr/bin/docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/dockerd.log" >&2; tail -20 /tmp/dockerd.log >&2; exit 1; }
echo "docker: $(/usr/bin/docker version --format '{{.Server.Version}}'), $(/usr/bin/docker compose version --short)"
