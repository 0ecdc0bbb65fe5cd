#!/usr/bin/env bash
# Install Prometheus and promtool from Debian bookworm's `prometheus` package, unpacked (dpkg -x)
# into /opt/deployctl-prometheus/<version>: the tests run the binaries on ports and data folders
# of their own, so nothing is installed as a service and no daemon is started (apt-get install
# would start one on :9090). Links in /usr/local/bin make `prometheus` and `promtool` found on PATH.
# Idempotent and quick: a second run finds the binaries and only checks them (well under a second).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# apt through .ci/apt.sh: .ci/run starts the installers at once, and apt's own lock fails a second apt-get.
apt="$(cd "$(dirname "$0")" && pwd)/apt.sh"

root=${PROMETHEUS_HOME:-/opt/deployctl-prometheus}
current="$root/current/bin"
if [ -x "$current/promtool" ] && [ -x "$current/prometheus" ] && "$current/promtool" --version >/dev/null 2>&1; then
  echo "prometheus: $("$current/prometheus" --version 2>&1 | head -1) (already installed)"
  exit 0
fi

version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  bash "$apt" update -q >/dev/null
  version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
fi
[ -n "$version" ] && [ "$version" != "(none)" ] || { echo "no prometheus package in the apt sources" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"  # apt-get download runs as _apt where it can
trap 'rm -rf "$work"' EXIT
(cd "$work" && bash "$apt" download -q "prometheus=$version" >/dev/null)
dpkg -x "$work"/prometheus_*.deb "$work/x"
dest="$root/$version"
mkdir -p "$dest/bin"
install -m 0755 "$work/x/usr/bin/prometheus" "$work/x/usr/bin/promtool" "$dest/bin/"
ln -sfn "$dest" "$root/current.tmp" && mv -T "$root/current.tmp" "$root/current"
ln -sf "$current/prometheus" /usr/local/bin/prometheus
ln -sf "$current/promtool" /usr/local/bin/promtool
echo "prometheus: $("$current/prometheus" --version 2>&1 | head -1)"
