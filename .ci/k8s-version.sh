# Sourced by install-k8s.sh and install-kubetools.sh (not an installer: .ci/run starts only install-*.sh).
# Where the Kubernetes binaries live and which build they are. The cache folder names what is built there:
# the source version and the reflect2 that replaced the vendored one (install-k8s.sh), so a cache of an
# older build is not reused. Tests look in $K8S_CACHE/current/bin.
K8S_CACHE=${K8S_CACHE:-/var/cache/deployctl-k8s}
K8S_SRC_VERSION=${K8S_SRC_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
K8S_BUILD=${K8S_BUILD:-$K8S_SRC_VERSION+reflect2-1.0.2}
