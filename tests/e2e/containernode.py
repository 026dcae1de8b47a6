"""A real node for end-to-end tests: containerd + runc, the upstream kubelet and kube-proxy, a bridge network.

``ContainerNode`` turns this host into one Kubernetes node of a ``ControlPlane``:

* **containerd** (Debian's) with its CRI plugin and runc, every directory and its socket under the
  node's work directory; the images built by ``make images`` are imported into it, and a pause image is
  made locally from Debian's ``catatonit`` (no registry is reachable).
* **the kubelet** and **kube-proxy** built from the control plane's own Kubernetes modules
  (``tests/cluster/build.sh kubelet|kube-proxy``). kube-proxy runs in iptables mode, so Service cluster
  IPs really route to pods.
* **a bridge CNI network** (``containernetworking-plugins``): bridge ``da-cni0`` with ``10.244.0.1/24``;
  every pod gets its own network namespace and an address in that range.
* **cluster DNS**: ``ClusterDns``, a small resolver answering ``<service>.<namespace>.svc.cluster.local``
  with the Service's cluster IP from the apiserver (what CoreDNS's kubernetes plugin does for
  ClusterIP Services; CoreDNS itself is not built here). The kubelet hands it to pods as their
  nameserver, so the chart's Service addresses are used as they are.

The apiserver binds the bridge address (pods reach it through the ``kubernetes`` Service), and the
kubelet serves logs and exec on it: nothing listens beyond this host's own bridge.

What a node changes on the host is recorded first and put back at ``stop()`` (``hoststate.py``),
which raises ``HostNotRestored`` if anything is left over.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cluster import _pdeathsig_prefix, _stop_processes
from .hoststate import HostState, recover_stale

NODE_NAME = "da-node"
BRIDGE = "da-cni0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
GATEWAY = "10.244.0.1"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/durable-agents/pause:catatonit"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"
# Packages the node needs (Debian bookworm); installed by scripts/install-node-deps.sh.
PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "catatonit", "buildah", "podman")


class NodeError(RuntimeError):
    """The node did not come up; the message names the component and its log file."""


class HostNotRestored(RuntimeError):
    """The node was stopped but left something on the host; the message lists what."""


def default_state_file() -> Path:
    cache = os.environ.get("DA_CLUSTER_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "durable-agents"
    )
    return Path(cache) / "node-host-state.json"


class ContainerNode:
    """One real node (containerd, kubelet, kube-proxy, bridge network, DNS) for a control plane.

    ``images`` are podman image names imported into containerd before the kubelet starts.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        kubelet: Path,
        kube_proxy: Path,
        kubeconfig: Path,
        images: Sequence[str],
        startup_timeout: float = 180.0,
        state_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.kubelet_binary = kubelet
        self.kube_proxy_binary = kube_proxy
        self.kubeconfig = kubeconfig
        self.server_url = ""
        self.admin_token = ""
        self.ca_path = Path()
        self.images = tuple(images)
        self.startup_timeout = startup_timeout
        self.state_file = state_file or default_state_file()
        self.log_dir = workdir / "logs"
        self.containerd_socket = workdir / "containerd" / "containerd.sock"
        self.pod_logs_dir = workdir / "pod-logs"
        self.timings: dict[str, float] = {}
        self._processes: list[subprocess.Popen] = []
        self._component_of: dict[int, str] = {}
        self._dns: ClusterDns | None = None
        self._host: HostState | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @staticmethod
    def prepare_host(workdir: Path, state_file: Path | None = None) -> HostState:
        """Record the host and create the bridge; call before the control plane binds its address.

        A record left by a killed session is restored first, so its leftovers never pile up.
        """
        state_file = state_file or default_state_file()
        leftovers = recover_stale(state_file)
        if leftovers:
            raise HostNotRestored(f"a killed session's node left, even after clean-up: {leftovers}")
        workdir.mkdir(parents=True, exist_ok=True)
        host = HostState.record(workdir, links=[BRIDGE])
        host.save(state_file)
        try:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
            _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
            _run("ip", "link", "set", BRIDGE, "up")
        except BaseException:
            host.restore()
            state_file.unlink(missing_ok=True)
            raise
        return host

    def start(self, host: HostState, *, server_url: str, admin_token: str, ca_path: Path) -> ContainerNode:
        """Start containerd, import the images, start kubelet, kube-proxy and DNS; wait for Ready.

        *server_url* is the apiserver on the bridge address; *admin_token* and *ca_path* let the
        node's own requests (DNS answers, pod clean-up) through.
        """
        self._host = host
        self.server_url, self.admin_token, self.ca_path = server_url, admin_token, ca_path
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, host: HostState | None = None) -> None:
        """Stop every pod and component, then restore the host; raise HostNotRestored on leftovers.

        *host* is the record of ``prepare_host`` when ``start`` was never reached; idempotent.
        """
        if self._host is None:
            self._host = host
        try:
            self._drain()
        finally:
            if self._dns is not None:
                self._dns.stop()
                self._dns = None
            self._stop_components()
            if self.kube_proxy_binary.exists():
                # Removes every rule and chain kube-proxy made, in both iptables families.
                subprocess.run(
                    [str(self.kube_proxy_binary), "--cleanup"], capture_output=True, timeout=60, check=False
                )
            self._kill_shims()
            problems = self._host.restore() if self._host else []
            if self._host is not None and not problems:
                self.state_file.unlink(missing_ok=True)
            # With problems the record stays for the next session's recover_stale (and a fixed clean-up).
            self._host = None
        if problems:
            raise HostNotRestored("the node left the host changed: " + "; ".join(problems))

    def _start(self) -> None:
        for directory in (self.workdir, self.log_dir, self.pod_logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self._start_containerd()
        self.timings["containerd start"] = time.monotonic() - t0
        t1 = time.monotonic()
        self._import_images()
        self.timings["image import"] = time.monotonic() - t1
        self._dns = ClusterDns(GATEWAY, self.server_url, self.admin_token, self.ca_path)
        self._dns.start()
        t2 = time.monotonic()
        self._start_kubelet()
        self._start_kube_proxy()
        self._wait_node_ready()
        self.timings["kubelet to node Ready"] = time.monotonic() - t2

    # -- containerd ----------------------------------------------------------------------------------

    def ctr(self, *args: str, input: bytes | None = None, timeout: float = 60) -> str:
        """``ctr`` against this node's containerd (the CRI's ``k8s.io`` namespace); its stdout."""
        result = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}")
        return result.stdout.decode()

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-durable-agents.conflist").write_text(json.dumps(self._cni_config(), indent=1))
        config = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config(base, cni_conf))
        self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + 60
        while True:
            self._check_alive()
            with contextlib.suppress(NodeError):
                self.ctr("version", timeout=10)
                return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"containerd did not answer on {self.containerd_socket}: {self._tail('containerd')}"
                )
            time.sleep(0.3)

    def _containerd_config(self, base: Path, cni_conf: Path) -> str:
        # Everything under the work directory; the runc root too (default /run/containerd/runc).
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # This host's shell lacks CAP_SYS_RESOURCE: lowering oom_score_adj below the runtime's own fails.
  restrict_oom_score_adj = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  Root = "{base / "runc"}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
"""

    def _cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "durable-agents",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # No masquerading to the outside (there is none); hairpin lets a pod reach itself
                    # through its own Service.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }

    def _import_images(self) -> None:
        pause = self.workdir / "pause"
        pause.mkdir(exist_ok=True)
        # The pause container only has to sleep and reap: catatonit does, as /pause.
        _run("buildah", "rmi", "-f", PAUSE_IMAGE, check=False)
        container = _run("buildah", "from", "scratch").strip()
        try:
            _run("buildah", "copy", container, "/usr/bin/catatonit", "/pause")
            _run("buildah", "config", "--entrypoint", '["/pause", "-P"]', container)
            _run("buildah", "commit", "--quiet", container, PAUSE_IMAGE)
        finally:
            _run("buildah", "rm", container, check=False)
        # One archive for all images: shared base layers are exported and unpacked once.
        archive = self.workdir / "images.tar"
        _run(
            "podman",
            "save",
            "--quiet",
            "--multi-image-archive",
            "-o",
            str(archive),
            PAUSE_IMAGE,
            *self.images,
        )
        try:
            with archive.open("rb") as stream:
                result = subprocess.run(
                    ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io",
                     "images", "import", "--snapshotter", "overlayfs", "-"],
                    stdin=stream, capture_output=True, timeout=600, check=False,
                )  # fmt: skip
            if result.returncode != 0:
                raise NodeError(f"importing {self.images} into containerd failed: {result.stderr.decode()}")
        finally:
            archive.unlink(missing_ok=True)
        listed = self.ctr("images", "list", "--quiet")
        missing = [image for image in (PAUSE_IMAGE, *self.images) if image not in listed]
        if missing:
            raise NodeError(f"images not in containerd after import: {missing}; containerd has:\n{listed}")

    # -- kubelet and kube-proxy ----------------------------------------------------------------------

    def _start_kubelet(self) -> None:
        root = self.workdir / "kubelet"
        root.mkdir(exist_ok=True)
        resolv = self.workdir / "resolv.conf"
        # For dnsPolicy Default pods; ClusterFirst pods (the default) get the cluster DNS.
        resolv.write_text(f"nameserver {GATEWAY}\n")
        self.kubelet_port = _free_port(GATEWAY)
        self.kubelet_healthz_port = _free_port("127.0.0.1")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This host has v1 (hybrid) cgroups, which the kubelet refuses unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "address": GATEWAY,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz_port,
            # The apiserver's logs/exec requests come without a client certificate: the kubelet only
            # listens on the node's own bridge. A production kubelet uses webhook authn/authz.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podCIDR": POD_CIDR,
            "podLogsDir": str(self.pod_logs_dir),
            "failSwapOn": False,
            "maxPods": 40,
            # The test images are imported, not pullable: never garbage-collect them, and never evict
            # pods because the developer's disk is fuller than a production node's would be.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            "registerNode": True,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "shutdownGracePeriod": "0s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        }
        config_path = self.workdir / "kubelet-config.json"
        config_path.write_text(json.dumps(config, indent=1))
        self._spawn(
            "kubelet",
            [
                str(self.kubelet_binary),
                f"--config={config_path}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": CLUSTER_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{_free_port('127.0.0.1')}",
            "metricsBindAddress": f"127.0.0.1:{_free_port('127.0.0.1')}",
            # Pod-to-Service replies on one bridge would bypass conntrack without br_netfilter:
            # masquerading all Service traffic sends them back through the host.
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "5s"},
            # Leave the host's conntrack table size and timeouts alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "nodePortAddresses": [f"{GATEWAY}/32"],
        }
        config_path = self.workdir / "kube-proxy-config.json"
        config_path.write_text(json.dumps(config, indent=1))
        self._spawn("kube-proxy", [str(self.kube_proxy_binary), f"--config={config_path}", "--v=1"])

    def _wait_node_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                node = self._api("GET", f"/api/v1/nodes/{NODE_NAME}")
                ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
                if ready and ready[0]["status"] == "True":
                    return
                last = ready[0]["message"] if ready else "no Ready condition"
            except (urllib.error.URLError, OSError, KeyError) as error:
                last = error
            time.sleep(0.5)
        raise NodeError(
            f"node {NODE_NAME} not Ready after {self.startup_timeout}s (last: {last}); "
            f"see {self.log_dir / 'kubelet.log'}:\n{self._tail('kubelet')}"
        )

    # -- teardown ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Delete every workload and pod and wait for the kubelet to stop them (networks torn down).

        Workloads go first and again on each round: controllers (and the operator, until its own pod
        is gone) would otherwise recreate the pods.
        """
        if not any(self._component_of.get(p.pid) == "kubelet" and p.poll() is None for p in self._processes):
            return
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for collection in ("/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets", "/api/v1/pods"):
                self._delete_all(collection)
            try:
                if not self.ctr("tasks", "list", "--quiet", timeout=10).strip():
                    return
            except (NodeError, subprocess.TimeoutExpired):
                return
            time.sleep(2)
        # Left to the forced clean-up below; the host check still reports anything that stays.

    def _delete_all(self, collection: str) -> None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            for item in self._api("GET", collection)["items"]:
                meta = item["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                path = collection.replace("/pods", f"/namespaces/{meta['namespace']}/pods")
                for kind in ("deployments", "statefulsets"):
                    path = path.replace(f"/{kind}", f"/namespaces/{meta['namespace']}/{kind}")
                with contextlib.suppress(urllib.error.URLError, OSError):
                    self._api("DELETE", f"{path}/{meta['name']}", {"gracePeriodSeconds": 2})

    def _stop_components(self) -> None:
        # kube-proxy and the kubelet first (SIGTERM), containerd last, after its tasks are gone.
        containerd = [p for p in self._processes if self._component_of.get(p.pid) == "containerd"]
        others = [p for p in self._processes if p not in containerd]
        _stop_processes(others, 15)
        if containerd and containerd[0].poll() is None:
            with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                for task in self.ctr("tasks", "list", "--quiet", timeout=10).split():
                    with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                        self.ctr("tasks", "kill", "--signal", "SIGKILL", task, timeout=10)
                        self.ctr("tasks", "delete", "--force", task, timeout=10)
        _stop_processes(containerd, 15)
        self._processes.clear()

    def _kill_shims(self) -> None:
        """SIGKILL containerd shims of this node (they outlive containerd by design)."""
        marker = str(self.containerd_socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)

    # -- helpers -------------------------------------------------------------------------------------

    def _spawn(self, component: str, command: list[str]) -> None:
        log = (self.log_dir / f"{component}.log").open("ab")
        try:
            proc = subprocess.Popen(
                [*_pdeathsig_prefix(), *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            log.close()
        self._processes.append(proc)
        self._component_of[proc.pid] = component

    def _check_alive(self) -> None:
        for proc in self._processes:
            if proc.poll() is not None:
                name = self._component_of[proc.pid]
                raise NodeError(
                    f"{name} exited with code {proc.returncode}; see {self.log_dir / (name + '.log')}:\n"
                    + self._tail(name)
                )

    def _tail(self, component: str, lines: int = 40) -> str:
        try:
            text = (self.log_dir / f"{component}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return _api(self.server_url, self.admin_token, self.ca_path, method, path, body)


def _api(
    server_url: str, token: str, ca_path: Path, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    request = urllib.request.Request(
        server_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ca_path))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def _run(*command: str, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- cluster DNS -------------------------------------------------------------------------------------


class ClusterDns:
    """A UDP resolver on *address*:53 for ``<service>.<namespace>.svc.<domain>`` names.

    Answers the Service's cluster IP (read from the apiserver on each query, so it is never stale),
    NXDOMAIN for other names in the cluster domain and for everything else (there is no upstream).
    AAAA queries for Services get an empty answer, so resolvers do not wait for IPv6.
    """

    def __init__(self, address: str, server_url: str, token: str, ca_path: Path) -> None:
        self.address = address
        self.server_url = server_url
        self.token = token
        self.ca_path = ca_path
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._serve, name="cluster-dns", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        try:
            self._sock.bind((self.address, 53))
        except OSError as error:
            raise NodeError(f"cluster DNS cannot bind {self.address}:53: {error}") from error
        self._sock.settimeout(0.5)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, peer = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed query must not end the resolver
                self._sock.sendto(self.answer(query), peer)

    def resolve(self, name: str) -> str | None:
        """The cluster IP of the Service *name* stands for, or None."""
        labels = name.rstrip(".").lower().split(".")
        suffix = ["svc", *CLUSTER_DOMAIN.split(".")]
        if len(labels) != 2 + len(suffix) or labels[2:] != suffix:
            return None
        service, namespace = labels[0], labels[1]
        try:
            body = _api(
                self.server_url,
                self.token,
                self.ca_path,
                "GET",
                f"/api/v1/namespaces/{namespace}/services/{service}",
            )
        except (urllib.error.URLError, OSError):
            return None
        ip = body.get("spec", {}).get("clusterIP")
        return ip if ip and ip != "None" else None

    def answer(self, query: bytes) -> bytes:
        self.queries += 1
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        name, offset = _read_name(query, 12)
        qtype, _qclass = struct.unpack("!HH", query[offset : offset + 4])
        question = query[12 : offset + 4]
        ip = self.resolve(name) if qdcount == 1 else None
        # QR, AA, RD, RA; RCODE 3 (NXDOMAIN) for names we do not know.
        flags = 0x8580 if ip else 0x8583
        answers = b""
        if ip and qtype == 1:
            rdata = ipaddress.IPv4Address(ip).packed
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, len(rdata)) + rdata
        header = struct.pack("!HHHHHH", ident, flags, 1, 1 if answers else 0, 0, 0)
        return header + question + answers


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = message[offset]
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        labels.append(message[offset : offset + length].decode("ascii", "replace"))
        offset += length
