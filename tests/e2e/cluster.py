"""A throw-away local Kubernetes control plane for end-to-end tests.

``ControlPlane`` runs etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as separate processes of the ``testcluster`` binary built by
``tests/cluster/build.sh``. Everything binds 127.0.0.1 on free ports and keeps
its state, certificates and logs in one directory, so several control planes
can coexist on a machine and nothing needs the network.

Authentication is a static admin token (group ``system:masters``); authorization
is ``Node,RBAC``, so service-account tokens are subject to real RBAC. Pods need a
node to run on: see ``tests/e2e/nodeagent.py``.

Only the standard library is required; ``cryptography`` is used for keys and
certificates when installed, the ``openssl`` CLI otherwise.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
# The first address of the service range is the in-cluster ``kubernetes`` service.
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# The controllers an operator test needs: workloads, garbage collection,
# namespaces and service accounts (with their tokens and the kube-root-ca.crt
# ConfigMap that projected service-account volumes reference). Not the
# endpoints controllers: pod IPs are loopback addresses, which Endpoints and
# EndpointSlices reject; the node agent resolves Service names itself.
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
)
# A real node's pods have routable addresses: Services get endpoints, which kube-proxy routes to; and a
# real kubelet registers its node tainted not-ready until the node lifecycle controller sees it Ready.
NODE_CONTROLLERS: tuple[str, ...] = (
    *DEFAULT_CONTROLLERS,
    "endpoints-controller",
    "endpointslice-controller",
    "node-lifecycle-controller",
)


class ControlPlaneError(RuntimeError):
    """A control-plane component failed to start; the message names its log file."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _generate_pki(directory: Path, serving_ips: Sequence[str]) -> None:
    """Write ca.crt, serving.crt/.key (for *serving_ips*) and sa.key/sa.pub into *directory*."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _generate_pki_openssl(directory, serving_ips)
    else:
        _generate_pki_cryptography(directory, serving_ips)


_SERVING_DNS_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")


def _generate_pki_cryptography(directory: Path, serving_ips: Sequence[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def write_key(path: Path, key) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "durable-agents-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    serving_key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(name) for name in _SERVING_DNS_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in serving_ips
    ]
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_key(directory / "ca.key", ca_key)
    (directory / "serving.crt").write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    write_key(directory / "serving.key", serving_key)

    # Service-account tokens are signed with RS256 by default.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _generate_pki_openssl(directory: Path, serving_ips: Sequence[str]) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=durable-agents-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "serving.key",
        "-out",
        "serving.csr",
        "-subj",
        "/CN=kube-apiserver",
    )
    san = ",".join([f"DNS:{name}" for name in _SERVING_DNS_NAMES] + [f"IP:{ip}" for ip in serving_ips])
    (directory / "serving.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "serving.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "serving.crt",
        "-days",
        "30",
        "-extfile",
        "serving.ext",
    )
    openssl("genrsa", "-out", "sa.key", "2048")
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def write_kubeconfig(path: Path, server: str, ca_path: Path, token: str, user: str = "admin") -> Path:
    """Write a token kubeconfig for *server* and return *path*.

    JSON is valid YAML, so kubectl and the client libraries read it as is.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_path)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def _pdeathsig_prefix() -> list[str]:
    """Command prefix that makes a child get SIGKILL if the test process dies.

    Covers the case no Python clean-up can: the test runner itself being
    SIGKILLed. ``setpriv`` (util-linux) sets the flag and execs the real
    command, avoiding an unsafe ``preexec_fn`` in a threaded process.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


def _stop_processes(processes: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM each process group (newest first), then SIGKILL what is left."""
    for proc in reversed(processes):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # Also reap helpers the component may have left in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    processes.clear()


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler) on 127.0.0.1.

    Use as a context manager or call ``start()``/``stop()``. After ``start()``:

    * ``server_url``, ``admin_token``, ``ca_path``, ``kubeconfig_path`` give admin access;
    * ``apiserver_ready_seconds`` is the time from starting etcd to the apiserver's
      ``/readyz`` answering ok, ``controller_manager_ready_seconds`` the time from
      starting the controller manager to its ``/healthz``, and ``start_seconds``
      the whole ``start()`` including the ``default`` service account appearing;
    * each component logs to ``<workdir>/logs/<component>.log``.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        *,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        scheduler: bool = True,
        startup_timeout: float = 120.0,
        extra_apiserver_args: Sequence[str] = (),
        bind_address: str = "127.0.0.1",
    ) -> None:
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.controllers = tuple(controllers)
        self.has_scheduler = scheduler
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        # 127.0.0.1 for the process node agent; a real node's pods reach the apiserver on the node's
        # bridge address instead (tests/e2e/containernode.py).
        self.bind_address = bind_address

        self.pki_dir = self.workdir / "pki"
        self.log_dir = self.workdir / "logs"
        self.ca_path = self.pki_dir / "ca.crt"
        self.kubeconfig_path = self.workdir / "admin.kubeconfig"
        self.admin_token = secrets.token_hex(24)
        self.apiserver_port = 0
        self.server_url = ""
        self.etcd_url = ""  # etcd's client URL (its v3 JSON gateway answers there too)
        self.restarts: list[tuple[float, float]] = []
        """(stopped, ready again) wall-clock times of each `restart()`: the apiserver answers requests
        before /readyz, and its RBAC authorizer may deny them until its caches are filled."""
        self.apiserver_ready_seconds: float | None = None
        self.controller_manager_ready_seconds: float | None = None
        self.start_seconds: float | None = None

        self._processes: list[subprocess.Popen] = []
        self._component_of: dict[int, str] = {}  # pid -> component name
        self._args_of: dict[str, list[str]] = {}  # component -> its arguments, for restart()
        # Runs at garbage collection or interpreter exit if stop() was never called.
        self._finalizer = weakref.finalize(self, _stop_processes, self._processes, 10.0)

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start all components and wait until they serve; stop everything on failure."""
        if self._processes:
            raise RuntimeError("control plane already started")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate all components (SIGTERM, SIGKILL after *timeout*); idempotent."""
        _stop_processes(self._processes, timeout)

    def _start(self) -> None:
        for directory in (self.pki_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        _generate_pki(self.pki_dir, sorted({"127.0.0.1", self.bind_address, KUBERNETES_SERVICE_IP}))
        token_file = self.pki_dir / "tokens.csv"
        # Format: token,user,uid,"group1,group2"
        token_file.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        token_file.chmod(0o600)

        t0 = time.monotonic()
        etcd_port, etcd_peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.workdir / 'etcd'}",
                f"--client-port={etcd_port}",
                f"--peer-port={etcd_peer_port}",
                # Test data is throw-away; fsync dominates write latency on slow disks.
                "--unsafe-no-fsync",
            ],
        )

        self.apiserver_port = free_port()
        self.server_url = f"https://{self.bind_address}:{self.apiserver_port}"
        write_kubeconfig(self.kubeconfig_path, self.server_url, self.ca_path, self.admin_token)
        pki = self.pki_dir
        if ipaddress.ip_address(self.bind_address).is_loopback:
            # The reconciler would publish 127.0.0.1 as the endpoint of the "kubernetes" service,
            # which Endpoints validation rejects.
            endpoints = ["--endpoint-reconciler-type=none"]
        else:
            # Pods reach the apiserver through the "kubernetes" Service, whose endpoint this publishes.
            endpoints = ["--endpoint-reconciler-type=lease"]
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--cert-dir={pki}",
                f"--token-auth-file={token_file}",
                # Also publishes the extension-apiserver-authentication ConfigMap
                # that the controller manager and scheduler look up at start.
                f"--client-ca-file={self.ca_path}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--enable-priority-and-fairness=false",
                *endpoints,
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )
        self._wait_https("kube-apiserver", f"{self.server_url}/readyz", token=self.admin_token)
        self.apiserver_ready_seconds = time.monotonic() - t0

        kubeconfig = str(self.kubeconfig_path)
        delegated_auth = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            # A single instance needs no leader election, which only delays start-up.
            "--leader-elect=false",
        ]
        t1 = time.monotonic()
        kcm_port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                *delegated_auth,
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                f"--root-ca-file={self.ca_path}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--controllers={','.join(self.controllers)}",
            ],
        )
        scheduler_port = free_port()
        if self.has_scheduler:
            self._spawn(
                "kube-scheduler",
                [
                    *delegated_auth,
                    f"--secure-port={scheduler_port}",
                    f"--cert-dir={self.workdir / 'sched-certs'}",
                ],
            )
        self._wait_https("kube-controller-manager", f"https://127.0.0.1:{kcm_port}/healthz")
        self.controller_manager_ready_seconds = time.monotonic() - t1
        if self.has_scheduler:
            self._wait_https("kube-scheduler", f"https://127.0.0.1:{scheduler_port}/healthz")
        # Pods cannot be created in a namespace before its default service
        # account exists; waiting here proves the controllers really run.
        self._wait_https(
            "kube-controller-manager",
            f"{self.server_url}/api/v1/namespaces/default/serviceaccounts/default",
            token=self.admin_token,
        )
        self.start_seconds = time.monotonic() - t0

    def restart(
        self,
        components: Sequence[str] = ("kube-apiserver",),
        *,
        down: float = 0.0,
        kill: bool = True,
        before_start: Callable[[], None] | None = None,
    ) -> float:
        """Stop *components* (SIGKILL, or SIGTERM with *kill* False), wait *down* seconds, start them
        again with the same arguments, ports and data, and wait for the apiserver's /readyz.

        ``("etcd", "kube-apiserver")`` restarts both (etcd first up). *before_start* runs while the
        apiserver is down, after etcd is back (e.g. to change stored data behind its watchers' backs).
        Returns the seconds from the stop until the apiserver answered ready again.
        """
        order = [c for c in ("etcd", "kube-apiserver") if c in components]
        if set(components) - set(order) or "kube-apiserver" not in order:
            raise ValueError(f"restart() restarts kube-apiserver (and etcd), not {sorted(components)}")
        victims = [p for p in self._processes if self._component_of.get(p.pid) in order]
        stopped_at, stopped_wall = time.monotonic(), time.time()
        for proc in victims:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        for proc in victims:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            self._processes.remove(proc)
            del self._component_of[proc.pid]
        time.sleep(down)
        if "etcd" in order:
            self._spawn("etcd", self._args_of["etcd"])
            self._wait_etcd()
        if before_start is not None:
            before_start()
        self._spawn("kube-apiserver", self._args_of["kube-apiserver"])
        self._wait_https("kube-apiserver", f"{self.server_url}/readyz", token=self.admin_token)
        self.restarts.append((stopped_wall, time.time()))
        return time.monotonic() - stopped_at

    # -- helpers -------------------------------------------------------------------

    def log_path(self, component: str) -> Path:
        """The log file of *component* (``etcd``, ``kube-apiserver``, ...)."""
        return self.log_dir / f"{component}.log"

    def _spawn(self, component: str, args: list[str]) -> None:
        log = self.log_path(component).open("ab")
        try:
            proc = subprocess.Popen(
                [*_pdeathsig_prefix(), str(self.binary), component, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own process group, so stop() can signal everything it spawned.
                start_new_session=True,
            )
        finally:
            log.close()
        self._processes.append(proc)
        self._component_of[proc.pid] = component
        self._args_of[component] = args

    def _wait_https(self, component: str, url: str, token: str | None = None) -> None:
        """Poll *url* until it answers 200; fail early if *component* exited."""
        if token:
            context = ssl.create_default_context(cafile=str(self.ca_path))
        else:
            # Controller manager and scheduler serve health on self-signed certificates.
            context = ssl._create_unverified_context()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + self.startup_timeout
        last_error: object = None
        while time.monotonic() < deadline:
            for proc in self._processes:
                if proc.poll() is not None:
                    name = self._component_of[proc.pid]
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode}; see {self.log_path(name)}:\n"
                        + self._log_tail(name)
                    )
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=5, context=context
                ) as response:
                    if response.status == 200:
                        return
                    last_error = response.status
            except (urllib.error.URLError, OSError) as error:
                last_error = error
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{component} not ready at {url} after {self.startup_timeout}s (last: {last_error}); "
            f"see {self.log_path(component)}:\n{self._log_tail(component)}"
        )

    def _wait_etcd(self) -> None:
        """Poll etcd's /health until it answers; fail naming its log after the start-up timeout."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.etcd_url}/health", timeout=5) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"etcd not healthy after {self.startup_timeout}s:\n{self._log_tail('etcd')}")

    def _log_tail(self, component: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(component).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
