"""A real single-node Kubernetes cluster for the e2e tests, started and removed by the test session.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on a private
containerd (its own root, state and socket; a second runtime handler `nvidia` mapped to runc),
a CNI bridge of its own, no kube-proxy. Nothing is pulled: the pause image is made from Debian's
busybox-static and imported, as is every image a test uses. The node advertises fake
`nvidia.com/gpu` capacity. Everything started is stopped by PID; mounts, network namespaces and
the bridge it made are removed. See docs/kubernetes.md ("The test cluster").
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.k8stools import tool

NODE = "deployctl-e2e-node"
BRIDGE = "dctl-e2e-cni0"
# A subnet no Docker network here uses (Docker takes 172.16.0.0/12 and 192.168.0.0/16 by default).
POD_SUBNET = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
PAUSE_IMAGE = "deployctl-e2e/pause:1"
FAKE_GPUS = 4
NETNS_DIR = Path("/var/run/netns")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KubeCluster:
    root: Path
    bin: Path = field(default_factory=lambda: Path(tool("kube-apiserver")).parent)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    ports: dict[str, int] = field(default_factory=dict)
    netns_before: set[str] = field(default_factory=set)
    netns_dir_existed: bool = True

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def sock(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    # -- processes ---------------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.returncode}) while waiting for {what}: {self.log_tail(name)}"
                    )
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.root / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self) -> None:
        for d in ("logs", "pki", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.netns_dir_existed = NETNS_DIR.is_dir()
        self.netns_before = set(os.listdir(NETNS_DIR)) if self.netns_dir_existed else set()
        self.ports = {name: _free_port() for name in ("etcd", "etcd-peer", "api", "kubelet", "kubelet-healthz")}
        self._start_control_plane()
        self._start_containerd()
        self._start_kubelet()
        self._prepare_node()

    def _start_control_plane(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key, sa_pub = self.root / "pki" / "sa.key", self.root / "pki" / "sa.pub"
        sa_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        sa_pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        tokens = self.root / "pki" / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        etcd, peer = self.ports["etcd"], self.ports["etcd-peer"]
        self._spawn(
            "etcd",
            [
                shutil.which("etcd") or "/usr/bin/etcd",
                "--name=e2e",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=e2e=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['api']}",
                "--insecure-port=0",
                f"--cert-dir={self.root / 'pki'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
            ],
        )
        self._wait("the API server's /readyz", lambda: self.api("GET", "/readyz") == b"ok", 90)
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "e2e", "cluster": {"server": self.server, "insecure-skip-tls-verify": True}}],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                    "current-context": "e2e",
                }
            )
        )
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--port=0", "--secure-port=0"]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *common,
                "--controllers=*,-nodeipam,-csrsigning,-csrapproving",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.root / 'pki' / 'apiserver.crt'}",
                "--use-service-account-credentials=false",
            ],
        )
        self._spawn("kube-scheduler", [str(self.bin / "kube-scheduler"), *common])

    def _start_containerd(self) -> None:
        c = self.root / "containerd"
        (self.root / "cni" / "net.d" / "10-e2e.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "deployctl-e2e",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "dataDir": str(self.root / "cni" / "ipam"),
                            },
                        }
                    ],
                }
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (c / "config.toml").write_text(
            f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
[{cri}]
  sandbox_image = "docker.io/{PAUSE_IMAGE}"
  # This VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj would stop runc starting the pause container.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    # What the GPU Operator registers; here plain runc, so runtimeClassName: nvidia is exercised.
    [{cri}.containerd.runtimes.nvidia]
      runtime_type = "io.containerd.runc.v2"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.root / "cni" / "net.d"}"
"""
        )
        self._spawn(
            "containerd", [shutil.which("containerd") or "/usr/bin/containerd", "--config", str(c / "config.toml")]
        )
        self._wait("containerd's socket", lambda: self.ctr("version").returncode == 0, 30)
        self.import_image(self._pause_image())

    def _pause_image(self) -> str:
        """The sandbox image: Debian's static busybox sleeping (containerd stops sandboxes with SIGKILL)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add("/bin/busybox", arcname="bin/busybox")
        subprocess.run(
            ["docker", "import", "--change", 'CMD ["/bin/busybox", "sleep", "2147483647"]', "-", PAUSE_IMAGE],
            input=buf.getvalue(),
            check=True,
            capture_output=True,
        )
        return PAUSE_IMAGE

    def _start_kubelet(self) -> None:
        k = self.root / "kubelet"
        (k / "config.json").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": "127.0.0.1",
                    "port": self.ports["kubelet"],
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": self.ports["kubelet-healthz"],
                    "cgroupDriver": "cgroupfs",
                    "cgroupsPerQOS": False,
                    "enforceNodeAllocatable": [],
                    "failSwapOn": False,
                    "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    "nodeStatusUpdateFrequency": "4s",
                    "syncFrequency": "5s",
                }
            )
        )
        self._spawn(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                f"--config={k / 'config.json'}",
                f"--kubeconfig={self.kubeconfig}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.sock}",
                f"--hostname-override={NODE}",
                "--node-ip=127.0.0.1",
                f"--root-dir={k}",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
            ],
        )
        self._wait("the node to be Ready", self._node_ready, 120)

    def _node_ready(self) -> bool:
        node = json.loads(self.api("GET", f"/api/v1/nodes/{NODE}"))
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def _prepare_node(self) -> None:
        # The documented way to advertise an extended resource: patch the node's status.
        patch = [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": str(FAKE_GPUS)}]
        self.api("PATCH", f"/api/v1/nodes/{NODE}/status", patch, "application/json-patch+json")
        self._wait("the fake GPUs to be allocatable", self._gpus_allocatable, 30)
        self.kubectl("apply", "-f", "-", stdin=json.dumps(runtime_class("nvidia")))

    def _gpus_allocatable(self) -> bool:
        node = json.loads(self.api("GET", f"/api/v1/nodes/{NODE}"))
        return node["status"].get("allocatable", {}).get("nvidia.com/gpu") == str(FAKE_GPUS)

    # -- talking to it -----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            out: bytes = resp.read()
            return out

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [tool("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def ctr(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ctr", "--address", str(self.sock), "--namespace", "k8s.io", *args],
            capture_output=True,
            input=stdin,
            timeout=300,
        )

    def import_image(self, image: str) -> None:
        """Put a local Docker image into the cluster's containerd (as `ctr -n k8s.io images import` on a node)."""
        with tempfile.TemporaryFile() as archive:
            subprocess.run(["docker", "save", image], stdout=archive, check=True)
            archive.seek(0)
            done = subprocess.run(
                ["ctr", "--address", str(self.sock), "--namespace", "k8s.io", "images", "import", "-"],
                stdin=archive,
                capture_output=True,
                timeout=300,
            )
        if done.returncode != 0:
            raise RuntimeError(f"ctr images import {image}: {done.stderr.decode(errors='replace').strip()}")

    # -- clean-up ----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything this cluster started and remove what it made; give what could not be removed."""
        problems: list[str] = []
        if "kube-apiserver" in self.procs and self.procs["kube-apiserver"].poll() is None:
            # Let the kubelet stop the pods itself: that runs CNI DEL and unmounts their volumes.
            self.kubectl(
                "delete", "deployments,replicasets,pods", "--all", "--all-namespaces", "--wait=false", check=False
            )
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and self.kubectl("get", "pods", "-A", "-o", "name", check=False).stdout.strip()
            ):
                time.sleep(1)
        if "containerd" in self.procs and self.procs["containerd"].poll() is None:
            self._stop("kubelet")
            self._remove_containers()
        for name in ("kubelet", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)
        problems += self._unmount()
        for ns in sorted(set(os.listdir(NETNS_DIR)) - self.netns_before if NETNS_DIR.is_dir() else ()):
            if subprocess.run(["ip", "netns", "delete", ns], capture_output=True).returncode != 0:
                problems.append(f"netns {ns}")
        if not self.netns_dir_existed and NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
            NETNS_DIR.rmdir()  # containerd made it for this cluster's pods
        has_bridge = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0
        if has_bridge and subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True).returncode != 0:
            problems.append(f"bridge {BRIDGE}")
        subprocess.run(["docker", "image", "rm", PAUSE_IMAGE], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"directory {self.root}")
        return problems

    def _stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _remove_containers(self) -> None:
        """Kill and delete whatever containers are left (their shims outlive containerd otherwise)."""
        for cid in self.ctr("containers", "list", "--quiet").stdout.decode().split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
            for _ in range(40):
                done = self.ctr("tasks", "delete", cid)
                if done.returncode == 0 or b"not found" in done.stderr:
                    break
                time.sleep(0.25)
            self.ctr("containers", "delete", cid)

    def _unmount(self) -> list[str]:
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                target = line.split()[1].replace("\\040", " ")
                if target == str(self.root) or target.startswith(f"{self.root}/"):
                    mounts.append(target)
        left = []
        for target in sorted(mounts, key=len, reverse=True):
            if subprocess.run(["umount", target], capture_output=True).returncode == 0:
                continue
            if subprocess.run(["umount", "-l", target], capture_output=True).returncode != 0:
                left.append(f"mount {target}")
        return left


def runtime_class(name: str) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": name}
