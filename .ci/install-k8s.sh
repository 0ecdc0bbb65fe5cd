#!/usr/bin/env bash
# Install what the Kubernetes cluster tests need on a clean Debian 12 machine (see docs/kubernetes.md,
# "Test cluster"): a single-node cluster's binaries and the packages the cluster runs on. helm and
# kubectl, which the unit tier needs too, come from install-kubetools.sh (quick, no build).
#
# - kube-apiserver, kube-controller-manager, kube-scheduler and kubelet: built from Debian bookworm's
#   source package `kubernetes` (no registry ships these binaries; Debian ships only the client), in
#   GOPATH mode as Debian's debian/rules does, CGO off. Only what the test cluster runs is built
#   (kubectl comes from the kubernetes-client package of the same source), without the cloud
#   providers and the dockershim (build tags providerless, dockerless). About 5-8 minutes on 2
#   cores: .ci/run starts it first and runs lint, the unit tests and the Docker tests meanwhile; the
#   binaries are kept in $K8S_CACHE/<source version>+reflect2-1.0.2/bin ($K8S_BUILD) and a reused machine skips the build.
# - etcd-server, containerd, containernetworking-plugins, busybox-static (the pause image is
#   built from it by the tests), golang-go + rsync (the build), dpkg-dev (apt-get source).
#
# The source is fetched through a private apt list with a deb-src line: the system's sources
# are never changed. Idempotent: a step already done is skipped. Ends by pointing
# $K8S_CACHE/current at the version's folder; tests look in $K8S_CACHE/current/bin.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=k8s-version.sh
. "$here/k8s-version.sh"  # K8S_CACHE, K8S_SRC_VERSION, K8S_BUILD
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
start=$(date +%s)

need=()
for pkg in etcd-server containerd containernetworking-plugins busybox-static golang-go rsync dpkg-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  bash "$here/apt.sh" update -q >/dev/null
  bash "$here/apt.sh" install -y -q --no-install-recommends "${need[@]}" >/dev/null
  # The tests run their own etcd on ports of their own; the package's service is not wanted.
  if [ -d /run/systemd/system ]; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

dest="$K8S_CACHE/$K8S_BUILD"
have_all=true
for c in "${KUBE_CMDS[@]}"; do [ -x "$dest/bin/$c" ] || have_all=false; done
if ! $have_all; then
  work="$K8S_CACHE/build"
  rm -rf "$work"
  mkdir -p "$work/lists/partial" "$work/src"
  echo "deb-src http://deb.debian.org/debian bookworm main" > "$work/src.list"
  opts=(-o "Dir::Etc::sourcelist=$work/src.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  bash "$here/apt.sh" "${opts[@]}" update -q >/dev/null
  (cd "$work/src" && bash "$here/apt.sh" "${opts[@]}" source -q "kubernetes=$K8S_SRC_VERSION" >/dev/null)
  tree=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -n "$tree" ] || { echo "install-k8s: apt-get source unpacked nothing in $work/src" >&2; exit 3; }
  # Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, whose unsafe map iteration crashes under Go 1.18+
  # (this build's golang-go is 1.19): the API server dies with SIGSEGV in runtime.mapiterinit from
  # reflect2.(*UnsafeMapType).UnsafeIterate on the first custom resource written (json-iterator
  # encoding an unstructured object). reflect2 1.0.2 is its release for Go 1.18 (same
  # API); Debian bookworm packages it, so it replaces the vendored copy before the build.
  (cd "$work" && bash "$here/apt.sh" download -q golang-github-modern-go-reflect2-dev >/dev/null)
  dpkg -x "$work"/golang-github-modern-go-reflect2-dev_1.0.2*.deb "$work/reflect2"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -a "$work/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2" "$tree/vendor/github.com/modern-go/reflect2"
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  what=""
  for c in "${KUBE_CMDS[@]}"; do what+="cmd/$c "; done
  echo "install-k8s: building ${KUBE_CMDS[*]} from kubernetes $K8S_SRC_VERSION (6-10 minutes)"
  # providerless, dockerless: Kubernetes' own build tags that leave out the in-tree cloud providers
  # (their SDKs) and the kubelet's dockershim; the test cluster uses neither (containerd through CRI),
  # and they are about 40% of the Go source these four binaries compile (105 MB -> 64 MB, `go list -deps`).
  (cd "$tree/.go/src/k8s.io/kubernetes" \
    && GOPATH="$tree/.go" GO111MODULE=off CGO_ENABLED=0 GOFLAGS=-tags=providerless,dockerless \
       make WHAT="${what% }" >"$work/build.log" 2>&1) \
    || { echo "install-k8s: build failed, last lines of $work/build.log:" >&2; tail -30 "$work/build.log" >&2; exit 3; }
  mkdir -p "$dest/bin"  # install-kubetools.sh's helm and kubectl may be there already: kept
  for c in "${KUBE_CMDS[@]}"; do
    bin=$(find "$tree/_output" -type f -name "$c" -perm -u+x | head -1)
    [ -n "$bin" ] || { echo "install-k8s: $c was not built" >&2; exit 3; }
    install -m 0755 "$bin" "$dest/bin/.$c.new" && mv "$dest/bin/.$c.new" "$dest/bin/$c"
  done
  rm -rf "$work"
fi

ln -sfn "$dest" "$K8S_CACHE/current"
"$dest/bin/kube-apiserver" --version >/dev/null
echo "k8s: $("$dest/bin/kubelet" --version), \
etcd $(etcd --version | head -1 | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}'); \
binaries in $K8S_CACHE/current/bin; took $(( $(date +%s) - start ))s"
