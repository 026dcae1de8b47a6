"""A test node agent: a kubelet stand-in that runs pod containers as local processes.

It registers a Node (Ready, generous capacity, address 127.0.0.1), keeps it
alive with a Lease in ``kube-node-lease`` and status heartbeats, optionally
binds unscheduled pods to itself (when no kube-scheduler runs), and for every
pod bound to it runs each container's ``command`` + ``args`` as a local process
in its own process group. Status (phase, conditions, containerStatuses with
state, restartCount and readiness) is written back to the apiserver, so
controllers and ``kubectl wait`` behave as against a real node.

How a container maps onto a local process
-----------------------------------------
* **The container image is ignored.** Commands resolve against the agent's own
  environment: the virtualenv the tests run in already contains the project's
  code, so ``durable-agents ...`` or ``python3 ...`` just work. ``PATH``
  (with the running interpreter's directory first), ``VIRTUAL_ENV``,
  ``PYTHONPATH`` and the locale are inherited; nothing else of the agent's
  environment leaks in (in particular not its ``KUBECONFIG``), and ``HOME`` is
  the per-pod directory so ``~/.kube/config`` is not found either. An
  absolute ``command[0]`` that does not exist locally (an image path such as
  ``/usr/local/bin/durable-agents``) falls back to its basename on ``PATH``.
  A container without ``command`` cannot run (no image entrypoint) and stays
  waiting with reason ``NoCommand``.
* **Environment**: ``value`` (with ``$(VAR)`` expansion), ``valueFrom``
  ``configMapKeyRef`` / ``secretKeyRef`` / ``fieldRef`` (``metadata.name``,
  ``metadata.namespace``, ``metadata.uid``, ``metadata.labels['k']``,
  ``metadata.annotations['k']``, ``spec.nodeName``, ``spec.serviceAccountName``,
  ``status.podIP`` / ``status.hostIP``, see Networking) and ``envFrom``
  ``configMapRef`` / ``secretRef`` (with ``prefix``). ``HOSTNAME`` is the pod
  name and ``PYTHONUNBUFFERED=1`` keeps Python output timely in the log files.
  A missing non-optional reference leaves the container waiting with reason
  ``CreateContainerConfigError`` and is retried.
* **Volumes** are materialised once per pod under
  ``<workdir>/<namespace>_<pod>_<uid8>/volumes/<volume>``: ConfigMap, Secret,
  emptyDir, downwardAPI and projected volumes (service-account tokens come from
  the real TokenRequest API, bound to the pod, and are refreshed before they
  expire); hostPath uses the host path itself; other kinds become an empty dir.
  Processes cannot see mounts at absolute paths, so **every ``mountPath`` (or
  ``mountPath/...``) occurring in ``command``, ``args``, env values,
  ``workingDir`` and exec probe commands is replaced by the materialised
  directory**, and each mounted volume's directory is also exported as
  ``DA_VOLUME_<NAME>`` (upper-cased, ``-`` and ``.`` become ``_``). ``subPath``
  is honoured. Code that opens a fixed path it did not get through its
  arguments or environment will not find the file.
* **Service-account credentials**: when a container mounts the standard
  ``/var/run/secrets/kubernetes.io/serviceaccount`` (the ``kube-api-access-*``
  volume the ServiceAccount admission plugin adds), its directory (``token``,
  ``ca.crt``, ``namespace``) is exported as ``DA_SERVICEACCOUNT_DIR``, and a
  kubeconfig carrying that pod-bound token is written and exported as
  ``KUBECONFIG``. ``KUBERNETES_SERVICE_HOST``/``_PORT`` point at the apiserver;
  since the fixed in-cluster token path does not exist, the ``kubernetes``
  client's and kopf's in-cluster login fail over to ``KUBECONFIG``. Either
  way the process acts as its service account, so RBAC applies exactly as in a
  cluster. With ``automountServiceAccountToken: false`` a process gets no
  credentials, as in a cluster.
* **Networking**: every pod gets a loopback address of its own (127.0.1.1 up to
  127.0.255.254; all of 127.0.0.0/8 reaches ``lo`` on Linux, so binding needs no
  set-up). It is the pod's ``status.podIP``/``podIPs``, the value of a
  ``fieldRef: status.podIP``, and the default host of its probes, so replicas
  that bind their pod IP can all use the same port. Ports are not remapped; a
  process binding ``0.0.0.0`` still takes the port on every address. The node
  and ``status.hostIP`` are 127.0.0.1. There is no cluster DNS or kube-proxy:
  instead a Service name ``<svc>.<ns>.svc[.cluster.local][:port]`` in
  ``command``, ``args`` or env values is replaced, when the container starts,
  by the IP of a ready pod behind the Service (and the port by its target
  port); until the Service has one, the container waits with reason
  ``CreateContainerConfigError``. Service names inside files (ConfigMap
  volumes) are not rewritten; mount paths inside them are (a runtime config
  naming a mounted Secret's file finds it).
* **Probes**: httpGet, tcpSocket, exec (grpc is approximated by a TCP connect)
  for startup, readiness and liveness, honouring ``initialDelaySeconds``,
  ``periodSeconds``, ``timeoutSeconds``, ``successThreshold`` and
  ``failureThreshold``. A failed liveness/startup probe kills the container.
* **Restarts** follow ``restartPolicy`` (Always/OnFailure/Never) with an
  exponential back-off capped small (default 0.5s doubling up to 5s) so tests
  stay fast. Init containers run in order; init containers with
  ``restartPolicy: Always`` are treated as sidecars.
* **Deletion**: on ``deletionTimestamp`` every container's process group gets
  SIGTERM, SIGKILL after the deletion grace period, then the pod is deleted
  with ``gracePeriodSeconds=0``. preStop hooks are not run.
* **Logs**: stdout/stderr go to ``<logdir>/<namespace>_<pod>_<container>.log``
  (appended across restarts, each start preceded by a ``#### nodeagent:``
  line). ``kubectl logs``/``exec`` do not work: there is no kubelet API.

Use from tests::

    agent = NodeAgent(server_url, token, ca_path, workdir, logdir).start()
    agent.processes()          # {pod name: {container name: pid}}
    os.kill(agent.pid("my-pod"), signal.SIGKILL)
    print(agent.logs("my-pod"))
    agent.stop()

or by hand: ``python -m tests.e2e.nodeagent --kubeconfig admin.kubeconfig``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("nodeagent")

HOST_IP = "127.0.0.1"
# Pod IPs are loopback addresses: on Linux all of 127.0.0.0/8 reaches ``lo``, and
# binding any of them needs no set-up. The node itself (and so the apiserver's
# address handed to pods) stays 127.0.0.1.
POD_IP_FIRST = ipaddress.IPv4Address("127.0.1.1")
POD_IP_LAST = ipaddress.IPv4Address("127.0.255.254")
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
HEARTBEAT_SECONDS = 10.0
CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# Variables a container inherits from the agent so that venv commands resolve.
INHERITED_ENV = ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")

Json = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _pdeathsig_prefix() -> list[str]:
    """Prefix that SIGKILLs a child when the thread that spawned it dies.

    This keeps container processes from outliving a crashed or SIGKILLed
    agent; ``setpriv`` sets the flag and execs the command, which is safer
    than ``preexec_fn`` in a threaded process.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ApiError(RuntimeError):
    """A non-2xx answer from the apiserver."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class ConfigError(RuntimeError):
    """A referenced ConfigMap, Secret or key is missing; the container cannot start yet."""


class Api:
    """Minimal JSON client for the Kubernetes API with bearer-token auth."""

    def __init__(self, server_url: str, token: str, ca_path: str | os.PathLike[str]) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.ca_path = str(ca_path)
        self._client = self._new_client()
        self._watch_sockets: set[socket.socket] = set()
        self._watches_lock = threading.Lock()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server_url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=ssl.create_default_context(cafile=self.ca_path),
            timeout=httpx.Timeout(30.0),
            trust_env=False,  # a proxy from the environment must never sit in front of 127.0.0.1
        )

    def close(self) -> None:
        """Close all connections, including open watches (their threads then end).

        An apiserver shutting down waits for open watches, so they must not
        linger after the agent stops.
        """
        with self._watches_lock:
            sockets = list(self._watch_sockets)
        for sock in sockets:
            # Closing the client would not wake a thread blocked reading the
            # stream; shutting the socket down does.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Json | None = None,
        content_type: str = "application/json",
    ) -> Json:
        content = None if body is None else json.dumps(body)
        response = self._client.request(
            method,
            path,
            params=params,
            content=content,
            headers={"Content-Type": content_type} if content is not None else None,
        )
        if response.status_code >= 300:
            raise ApiError(response.status_code, response.text)
        return response.json() if response.content else {}

    def get(self, path: str, **params: Any) -> Json:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body=body)

    def merge_patch(self, path: str, body: Json) -> Json:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body=body)

    def list_watch(
        self,
        path: str,
        params: Json,
        stop: threading.Event,
        on_list: Callable[[list[Json]], None],
        on_event: Callable[[str, Json], None],
    ) -> None:
        """List, then watch *path* until *stop* is set; re-list whenever the watch breaks."""
        while not stop.is_set():
            try:
                listing = self.get(path, **params)
                on_list(listing.get("items") or [])
                version = listing["metadata"]["resourceVersion"]
                # A separate connection per watch so a long poll never starves requests.
                with self._new_client() as client:
                    while not stop.is_set():
                        version = self._watch_once(client, path, params, version, stop, on_event)
            except Exception as error:  # any failure: log, back off, re-list
                if not stop.is_set():
                    log.warning("watch %s failed (%s); re-listing", path, error)
                    stop.wait(1.0)

    def _watch_once(
        self,
        client: httpx.Client,
        path: str,
        params: Json,
        version: str,
        stop: threading.Event,
        on_event: Callable[[str, Json], None],
    ) -> str:
        query = {
            **params,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "30",
        }
        with client.stream("GET", path, params=query, timeout=httpx.Timeout(10.0, read=45.0)) as response:
            if response.status_code >= 300:
                raise ApiError(response.status_code, response.read().decode(errors="replace"))
            sock = response.extensions["network_stream"].get_extra_info("socket")
            with self._watches_lock:
                self._watch_sockets.add(sock)
            try:
                for line in response.iter_lines():
                    if stop.is_set():
                        break
                    if not line:
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise ApiError(event["object"].get("code", 500), json.dumps(event["object"]))
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
            finally:
                with self._watches_lock:
                    self._watch_sockets.discard(sock)
        return version


# -- helpers for pod specs ---------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


class MountMap:
    """Rewrites container mount paths to the local directories standing in for them."""

    def __init__(self, mounts: list[tuple[str, Path]]) -> None:
        # Longest first, so /etc/app/data wins over /etc/app.
        self._mounts = sorted(((m.rstrip("/") or "/", p) for m, p in mounts), key=lambda m: -len(m[0]))
        self._pattern = (
            re.compile("|".join(f"({re.escape(m)})(?=/|$|[^-\\w.])" for m, _ in self._mounts))
            if self._mounts
            else None
        )

    def rewrite(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: str(self._mounts[(m.lastindex or 1) - 1][1]), text)

    def local_path(self, mount_path: str) -> Path | None:
        for path, local in self._mounts:
            if path == mount_path.rstrip("/"):
                return local
        return None


def _field_ref(pod: Json, field_path: str, pod_ip: str) -> str:
    metadata, spec = pod["metadata"], pod["spec"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
    if match:
        return (metadata.get(match.group(1)) or {}).get(match.group(2), "")
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": HOST_IP,
        "status.hostIPs": HOST_IP,
    }
    if field_path not in values:
        raise ConfigError(f"unsupported fieldRef {field_path!r}")
    return values[field_path]


# ``<service>.<namespace>.svc`` (optionally ``.cluster.local``), optionally with ``:<port>``.
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SERVICE_HOST = re.compile(
    rf"(?<![-\w.])(?P<service>{_DNS_LABEL})\.(?P<namespace>{_DNS_LABEL})\.svc(?:\.cluster\.local)?"
    r"(?::(?P<port>\d+))?(?![-\w.])"
)


def _env_name(volume: str) -> str:
    return "DA_VOLUME_" + re.sub(r"[^A-Za-z0-9_]", "_", volume).upper()


class _Probe:
    """Schedule and consecutive-result counters of one probe of one container run."""

    def __init__(self, spec: Json, started: float) -> None:
        self.spec = spec
        self.period = float(spec.get("periodSeconds", 10))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.next_at = started + float(spec.get("initialDelaySeconds", 0))
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + self.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1


class _Container:
    """Runtime state of one (init) container of a pod."""

    def __init__(self, spec: Json, *, init: bool) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        # Init containers with restartPolicy Always are sidecars.
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.cwd = ""
        self.runs = 0
        self.restart_count = 0
        self.started_at = ""
        self.started_mono = 0.0
        self.waiting: tuple[str, str] = ("ContainerCreating", "")  # (reason, message)
        self.terminated: Json | None = None  # final state when not restarting
        self.last_terminated: Json | None = None
        self.backoff_until = 0.0
        self.backoff = 0.0
        self.ready = False
        self.startup_done = True
        self.probes: dict[str, _Probe] = {}
        self.kill_deadline: float | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None


class PodRunner:
    """Runs the containers of one pod and reports their status, in a thread of its own."""

    TICK = 0.2

    def __init__(self, agent: NodeAgent, pod: Json, pod_ip: str) -> None:
        meta = pod["metadata"]
        self.thread = threading.Thread(
            target=self._run, name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True
        )
        self.agent = agent
        self.api = agent.api
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.pod_ip = pod_ip
        self._pod = pod
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._gone = False  # the pod object no longer exists
        self._shutdown = False  # the agent is stopping
        self.pod_dir = agent.workdir / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self.volumes: dict[str, Path] = {}
        self._volumes_ready = False
        self._volume_error = ""
        self._tokens: list[tuple[Json, Path, float]] = []  # (source, volume dir, refresh at)
        self._sa_kubeconfigs: dict[str, Path] = {}  # volume name -> kubeconfig path
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_containers = [_Container(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [_Container(c, init=False) for c in spec["containers"]]
        self._init_index = 0
        self._init_failed = False
        self.start_time = _now()
        self._last_status: Json | None = None
        self._transitions: dict[str, tuple[str, str]] = {}  # condition type -> (status, since)

    # -- interface for the agent -----------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def update(self, pod: Json) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        """The pod was deleted from the API: kill everything at once and finish."""
        self._gone = True
        self._wake.set()

    def shutdown(self) -> None:
        """The agent stops: terminate the processes without touching the API."""
        self._shutdown = True
        self._wake.set()

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.init_containers + self.containers if c.proc}

    # -- main loop ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod %s/%s: runner crashed", self.namespace, self.pod_name)
            self._terminate(grace=0)
        finally:
            self.agent._runner_finished(self)

    def _loop(self) -> None:
        while True:
            with self._lock:
                pod = self._pod
            if self._gone:
                self._terminate(grace=0)
                return
            if self._shutdown:
                self._terminate(grace=self.agent.stop_grace)
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._delete(pod)
                return
            if not self._volumes_ready:
                self._prepare_volumes(pod)
            if self._volumes_ready:
                self._refresh_tokens(pod)
                self._step_init(pod)
                if self._init_done():
                    for container in self.containers:
                        self._step(pod, container)
                # Sidecars already passed in the init sequence keep being supervised.
                for container in self.init_containers[: self._init_index]:
                    if container.sidecar:
                        self._step(pod, container)
            self._push_status(pod)
            self._wake.wait(self.TICK if self._volumes_ready else 2.0)
            self._wake.clear()

    def _delete(self, pod: Json) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        self._terminate(grace=float(grace))
        with contextlib.suppress(ApiError):
            self.api.delete(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )

    def _terminate(self, grace: float) -> None:
        """SIGTERM all running containers, SIGKILL whatever is left after *grace* seconds."""
        running = [(c, c.proc) for c in self.init_containers + self.containers if c.proc]
        for container, proc in running:
            self._log_line(container, f"stopping pid {proc.pid}: SIGTERM, SIGKILL after {grace:g}s")
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for container, proc in running:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            container.proc = None

    # -- init containers ---------------------------------------------------------------

    def _init_done(self) -> bool:
        return self._init_index >= len(self.init_containers)

    def _step_init(self, pod: Json) -> None:
        if self._init_done() or self._init_failed:
            return
        container = self.init_containers[self._init_index]
        self._step(pod, container)
        if container.sidecar:
            if container.running and container.startup_done:
                self._init_index += 1
        elif container.terminated:
            if container.terminated["exitCode"] == 0:
                self._init_index += 1
            else:
                self._init_failed = True

    # -- regular containers and sidecars -------------------------------------------------

    def _step(self, pod: Json, container: _Container) -> None:
        now = time.monotonic()
        if container.proc is None:
            if container.terminated is None:
                self._start_when_due(pod, container)
            return
        if container.proc.poll() is not None:
            self._after_exit(container, self._reap(container))
            return
        if container.kill_deadline is not None:
            if now >= container.kill_deadline:
                _killpg(container.proc.pid, signal.SIGKILL)
            return
        self._run_probes(pod, container, now)

    def _start_when_due(self, pod: Json, container: _Container) -> None:
        if time.monotonic() < container.backoff_until:
            return
        try:
            self._start(pod, container)
        except (ConfigError, ApiError, httpx.HTTPError) as error:
            container.waiting = ("CreateContainerConfigError", str(error))
            container.backoff_until = time.monotonic() + 1.0

    def _schedule_restart(self, container: _Container, terminated: Json) -> None:
        container.last_terminated = terminated
        # A run that lasted well beyond the cap resets the back-off, as in the kubelet.
        if time.monotonic() - container.started_mono > 2 * self.agent.backoff_max:
            container.backoff = 0.0
        container.backoff = min(
            self.agent.backoff_max, container.backoff * 2 if container.backoff else self.agent.backoff_initial
        )
        container.backoff_until = time.monotonic() + container.backoff
        container.waiting = (
            "CrashLoopBackOff",
            f"back-off {container.backoff:g}s restarting failed container",
        )

    def _reap(self, container: _Container) -> Json:
        """Collect an exited process, kill leftovers in its group, return its terminated state."""
        proc = container.proc
        assert proc is not None
        code = proc.returncode
        _killpg(proc.pid, signal.SIGKILL)
        container.proc = None
        container.ready = False
        container.kill_deadline = None
        exit_code = 128 - code if code < 0 else code  # killed by signal N -> 128+N
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": _now(),
            "containerID": f"nodeagent://{proc.pid}",
        }
        if code < 0:
            terminated["signal"] = -code
        self._log_line(container, f"process {proc.pid} exited with code {exit_code}")
        return terminated

    def _start(self, pod: Json, container: _Container) -> None:
        spec = container.spec
        command = spec.get("command") or []
        if not command:
            container.waiting = ("NoCommand", "the node agent ignores images, so a command is required")
            container.backoff_until = float("inf")
            return
        mounts = self._mount_map(container)
        env = self._container_env(pod, container, mounts)
        argv = [expand_vars(self._rewrite(arg, mounts), env) for arg in command + (spec.get("args") or [])]
        executable = shutil.which(argv[0], path=env.get("PATH"))
        if executable is None and os.path.isabs(argv[0]):
            executable = shutil.which(os.path.basename(argv[0]), path=env.get("PATH"))
        cwd = self.pod_dir
        if spec.get("workingDir"):
            candidate = Path(mounts.rewrite(spec["workingDir"]))
            cwd = candidate if candidate.is_dir() else cwd
        if container.runs:
            container.restart_count += 1
        container.runs += 1
        container.env, container.cwd = env, str(cwd)
        container.started_at, container.started_mono = _now(), time.monotonic()
        if executable is None:
            self._log_line(container, f"executable {argv[0]!r} not found on PATH")
            self._after_exit(
                container,
                {
                    "exitCode": 127,
                    "reason": "StartError",
                    "message": f"{argv[0]!r} not found",
                    "startedAt": container.started_at,
                    "finishedAt": _now(),
                },
            )
            return
        argv[0] = executable
        log_path = self.agent.log_path(self.namespace, self.pod_name, container.name)
        self._log_line(container, f"starting {argv!r} in {cwd}")
        with log_path.open("ab") as log_file:
            container.proc = subprocess.Popen(
                [*_pdeathsig_prefix(), *argv],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach its children too
            )
        self._log_line(container, f"started pid {container.proc.pid}")
        container.waiting = ("", "")
        container.ready = False
        container.kill_deadline = None
        container.probes = {
            kind: _Probe(spec[key], container.started_mono)
            for kind, key in (
                ("startup", "startupProbe"),
                ("readiness", "readinessProbe"),
                ("liveness", "livenessProbe"),
            )
            if spec.get(key)
        }
        container.startup_done = "startup" not in container.probes

    def _after_exit(self, container: _Container, terminated: Json) -> None:
        """Restart *container* per the restart policy, or record its final state."""
        if container.sidecar:
            policy = "Always"
        elif container.init and self.restart_policy == "Always":
            policy = "OnFailure"  # init containers run to completion once
        else:
            policy = self.restart_policy
        if policy == "Always" or (policy == "OnFailure" and terminated["exitCode"] != 0):
            self._schedule_restart(container, terminated)
        else:
            container.terminated = terminated

    def _log_line(self, container: _Container, message: str) -> None:
        path = self.agent.log_path(self.namespace, self.pod_name, container.name)
        with path.open("a") as log_file:
            log_file.write(f"#### nodeagent: {_now()} {message}\n")

    # -- probes ------------------------------------------------------------------------

    def _run_probes(self, pod: Json, container: _Container, now: float) -> None:
        for kind, probe in container.probes.items():
            if kind != "startup" and not container.startup_done:
                continue
            if kind == "startup" and container.startup_done:
                continue
            if now < probe.next_at:
                continue
            probe.record(self._probe(container, probe), time.monotonic())
            if kind == "startup":
                if probe.successes >= probe.success_threshold:
                    container.startup_done = True
                elif probe.failures >= probe.failure_threshold:
                    self._kill_for_probe(pod, container, "startup")
            elif kind == "readiness":
                if probe.successes >= probe.success_threshold:
                    container.ready = True
                elif probe.failures >= probe.failure_threshold:
                    container.ready = False
            elif probe.failures >= probe.failure_threshold:
                self._kill_for_probe(pod, container, "liveness")
        if "readiness" not in container.probes:
            container.ready = container.startup_done

    def _kill_for_probe(self, pod: Json, container: _Container, kind: str) -> None:
        assert container.proc is not None
        self._log_line(container, f"{kind} probe failed; killing pid {container.proc.pid}")
        probe_spec = container.probes[kind].spec
        grace = probe_spec.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        container.ready = False
        container.kill_deadline = time.monotonic() + float(grace)
        _killpg(container.proc.pid, signal.SIGTERM)

    def _probe(self, container: _Container, probe: _Probe) -> bool:
        spec = probe.spec
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                scheme = get.get("scheme", "HTTP").lower()
                host = get.get("host") or self.pod_ip
                url = f"{scheme}://{host}:{self._port(container, get['port'])}{get.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                response = httpx.get(
                    url, headers=headers, timeout=probe.timeout, verify=False, trust_env=False
                )
                return 200 <= response.status_code < 400
            if "tcpSocket" in spec or "grpc" in spec:
                target = spec.get("tcpSocket") or spec["grpc"]
                host = target.get("host") or self.pod_ip
                with socket.create_connection((host, self._port(container, target["port"])), probe.timeout):
                    return True
            if "exec" in spec:
                mounts = self._mount_map(container)
                argv = [expand_vars(mounts.rewrite(a), container.env) for a in spec["exec"]["command"]]
                result = subprocess.run(
                    argv,
                    env=container.env,
                    cwd=container.cwd,
                    capture_output=True,
                    timeout=probe.timeout,
                    check=False,
                )
                return result.returncode == 0
        except (OSError, httpx.HTTPError, subprocess.TimeoutExpired, ValueError):
            return False
        return True  # a probe without a handler never fails

    @staticmethod
    def _port(container: _Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in container.spec.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise ValueError(f"unknown named port {port!r}")

    # -- environment -------------------------------------------------------------------

    def _mount_map(self, container: _Container) -> MountMap:
        mounts = []
        for mount in container.spec.get("volumeMounts") or []:
            local = self.volumes.get(mount["name"])
            if local is None:
                continue
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts.append((mount["mountPath"], local))
        return MountMap(mounts)

    def _container_env(self, pod: Json, container: _Container, mounts: MountMap) -> dict[str, str]:
        """The process environment: the agent's own variables, then the pod's, which win.

        Mount paths are rewritten in the pod's values only: the agent's values
        are local paths already, and rewriting them again would break them when
        a mount path such as /tmp is a prefix of a local path.
        """
        agent_env = dict(self.agent.base_env)
        port = str(self.agent.apiserver_port)
        agent_env.update(
            {
                "HOSTNAME": self.pod_name,
                # Not the agent's home: its ~/.kube/config must not hand out credentials.
                "HOME": str(self.pod_dir),
                "KUBERNETES_SERVICE_HOST": HOST_IP,
                "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port,
                "KUBERNETES_PORT": f"tcp://{HOST_IP}:{port}",
            }
        )
        for mount in container.spec.get("volumeMounts") or []:
            local = mounts.local_path(mount["mountPath"])
            if local is None:
                continue
            agent_env[_env_name(mount["name"])] = str(local)
            if mount["mountPath"].rstrip("/") == SERVICE_ACCOUNT_MOUNT:
                agent_env["DA_SERVICEACCOUNT_DIR"] = str(local)
                kubeconfig = self._sa_kubeconfigs.get(mount["name"])
                if kubeconfig:
                    agent_env["KUBECONFIG"] = str(kubeconfig)
        env = dict(agent_env)  # pod variables are added on top, each visible to later $(VAR)s
        namespace = self.namespace
        for source in container.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = self._get_data("configmaps", ref["name"], ref.get("optional", False))
            else:
                ref = source["secretRef"]
                data = self._get_data("secrets", ref["name"], ref.get("optional", False))
            for key, value in data.items():
                env[prefix + key] = self._rewrite(value, mounts)
        for var in container.spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand_vars(self._rewrite(var.get("value", ""), mounts), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"], self.pod_ip)
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                kind = "configmaps" if "configMapKeyRef" in source else "secrets"
                ref = source.get("configMapKeyRef") or source["secretKeyRef"]
                data = self._get_data(kind, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[name] = self._rewrite(data[ref["key"]], mounts)
                elif not ref.get("optional", False):
                    raise ConfigError(f"key {ref['key']!r} not found in {kind} {namespace}/{ref['name']}")
            else:
                log.warning(
                    "pod %s/%s: env %s: unsupported valueFrom %s",
                    namespace,
                    self.pod_name,
                    name,
                    list(source),
                )
        return env

    def _rewrite(self, text: str, mounts: MountMap) -> str:
        """A pod-provided value as the process must see it: mount paths and Service names made local."""
        return _SERVICE_HOST.sub(self._service_endpoint, mounts.rewrite(text))

    def _service_endpoint(self, match: re.Match[str]) -> str:
        """``<svc>.<ns>.svc[:port]`` → the IP (and target port) of a ready pod behind that Service.

        There is no cluster DNS or kube-proxy, so a Service name is resolved
        once, when the container starts. Without a ready endpoint the container
        waits (``CreateContainerConfigError``, retried), like a client retrying DNS.
        """
        name, namespace, port = match.group("service"), match.group("namespace"), match.group("port")
        where = f"Service {namespace}/{name}"
        try:
            service = self.api.get(f"/api/v1/namespaces/{namespace}/services/{name}")
        except ApiError as error:
            if error.status == 404:
                raise ConfigError(f"{where} not found") from error
            raise
        selector = service["spec"].get("selector") or {}
        if not selector:
            raise ConfigError(f"{where} has no selector; the node agent resolves only selector Services")
        pods = self.api.get(
            f"/api/v1/namespaces/{namespace}/pods",
            labelSelector=",".join(f"{key}={value}" for key, value in selector.items()),
        )["items"]

        def usable(pod: Json) -> bool:
            if pod["metadata"]["uid"] == self.uid:
                return True  # a pod may reach itself through its own Service
            conditions = pod.get("status", {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return ready and not pod["metadata"].get("deletionTimestamp") and bool(pod["status"].get("podIP"))

        endpoint = next((pod for pod in pods if usable(pod)), None)
        if endpoint is None:
            raise ConfigError(f"{where} has no ready endpoint yet")
        ip = self.pod_ip if endpoint["metadata"]["uid"] == self.uid else endpoint["status"]["podIP"]
        if port is None:
            return ip
        target: int | str = int(port)
        for service_port in service["spec"].get("ports") or []:
            if service_port.get("port") == int(port):
                target = service_port.get("targetPort", int(port))
        if isinstance(target, str) and not target.isdigit():
            declared = [p for c in endpoint["spec"]["containers"] for p in c.get("ports") or []]
            named = next((p["containerPort"] for p in declared if p.get("name") == target), None)
            if named is None:
                raise ConfigError(f"{where}: no container port named {target!r} on its endpoint")
            target = named
        return f"{ip}:{target}"

    def _get_data(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        """The data of a ConfigMap/Secret as text; {} if missing and optional."""
        try:
            obj = self.api.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as error:
            if error.status == 404:
                if optional:
                    return {}
                raise ConfigError(f"{kind} {self.namespace}/{name} not found") from error
            raise
        return {key: value.decode(errors="replace") for key, value in self._object_bytes(kind, obj).items()}

    @staticmethod
    def _object_bytes(kind: str, obj: Json) -> dict[str, bytes]:
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    # -- volumes -----------------------------------------------------------------------

    def _prepare_volumes(self, pod: Json) -> None:
        # The pod's directory is its processes' working directory and HOME, volumes or not.
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        try:
            for volume in pod["spec"].get("volumes") or []:
                directory = self.pod_dir / "volumes" / volume["name"]
                directory.mkdir(parents=True, exist_ok=True)
                self._materialise(pod, volume, directory)
                self.volumes[volume["name"]] = (
                    Path(volume["hostPath"]["path"]) if "hostPath" in volume else directory
                )
            self._rewrite_config_files(pod)
        except (ConfigError, ApiError, httpx.HTTPError) as error:
            self._volume_error = str(error)
            for container in self.init_containers + self.containers:
                container.waiting = ("ContainerCreating", f"volume setup failed: {error}")
            return
        self._volume_error = ""
        self._volumes_ready = True
        for container in self.containers if self.init_containers else []:
            container.waiting = ("PodInitializing", "")

    def _rewrite_config_files(self, pod: Json) -> None:
        """Mount paths named inside ConfigMap volume files become the local directories standing in for
        them, as in commands and env values (once, when the pod's volumes are written): a config file
        naming a file of a mounted Secret (a CA bundle, say) finds it."""
        mounts = MountMap(
            [
                (m["mountPath"], self.volumes[m["name"]] / m.get("subPath", ""))
                for c in self.init_containers + self.containers
                for m in c.spec.get("volumeMounts") or []
                if m["name"] in self.volumes
            ]
        )
        for volume in pod["spec"].get("volumes") or []:
            if "configMap" not in volume:
                continue
            for path in self.volumes[volume["name"]].rglob("*"):
                try:
                    text = path.read_text()
                except (IsADirectoryError, UnicodeDecodeError):
                    continue
                if (rewritten := mounts.rewrite(text)) != text:
                    path.write_text(rewritten)

    def _materialise(self, pod: Json, volume: Json, directory: Path) -> None:
        if "configMap" in volume or "secret" in volume:
            self._write_object_volume(volume, directory)
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode")
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    self._write_token(pod, source["serviceAccountToken"], directory)
                elif "configMap" in source or "secret" in source:
                    self._write_object_volume(source, directory, mode)
                elif "downwardAPI" in source:
                    self._write_downward(pod, source["downwardAPI"], directory)
            if self._has_sa_mount(volume["name"]):
                self._write_sa_kubeconfig(volume["name"], directory)
        elif "downwardAPI" in volume:
            self._write_downward(pod, volume["downwardAPI"], directory)
        elif "hostPath" in volume:
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                Path(volume["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        elif "emptyDir" not in volume:
            log.warning(
                "pod %s/%s: volume %s of unsupported kind is an empty dir",
                self.namespace,
                self.pod_name,
                volume["name"],
            )

    def _has_sa_mount(self, volume_name: str) -> bool:
        return any(
            m["name"] == volume_name and m["mountPath"].rstrip("/") == SERVICE_ACCOUNT_MOUNT
            for c in self.init_containers + self.containers
            for m in c.spec.get("volumeMounts") or []
        )

    def _write_object_volume(self, source: Json, directory: Path, default_mode: int | None = None) -> None:
        kind = "configmaps" if "configMap" in source else "secrets"
        ref = source.get("configMap") or source["secret"]
        name = ref.get("name") or ref.get("secretName")
        try:
            obj = self.api.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as error:
            if error.status == 404 and ref.get("optional"):
                return
            if error.status == 404:
                raise ConfigError(f"{kind} {self.namespace}/{name} not found") from error
            raise
        data = self._object_bytes(kind, obj)
        mode: int = ref.get("defaultMode", 0o644 if default_mode is None else default_mode)
        items: list[Json] = ref.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ConfigError(f"key {item['key']!r} not found in {kind} {self.namespace}/{name}")
            self._write_file(directory / item["path"], data[item["key"]], item.get("mode", mode))

    def _write_downward(self, pod: Json, source: Json, directory: Path) -> None:
        for item in source.get("items") or []:
            if "fieldRef" in item:
                value = _field_ref(pod, item["fieldRef"]["fieldPath"], self.pod_ip)
                self._write_file(directory / item["path"], value.encode(), item.get("mode", 0o644))

    def _write_token(self, pod: Json, source: Json, directory: Path) -> None:
        path = directory / source.get("path", "token")
        spec: Json = {
            "expirationSeconds": int(source.get("expirationSeconds", 3600)),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.pod_name, "uid": self.uid},
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        account = pod["spec"].get("serviceAccountName") or "default"
        answer = self.api.post(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        self._write_file(path, answer["status"]["token"].encode(), 0o600)
        # Refresh after 80% of the lifetime, like the kubelet.
        expires = _parse_time(answer["status"]["expirationTimestamp"])
        refresh_at = time.time() + 0.8 * (expires - time.time())
        self._tokens = [t for t in self._tokens if (t[0], t[1]) != (source, directory)]
        self._tokens.append((source, directory, refresh_at))

    def _refresh_tokens(self, pod: Json) -> None:
        for source, directory, refresh_at in list(self._tokens):
            if time.time() >= refresh_at:
                try:
                    self._write_token(pod, source, directory)
                except (ApiError, httpx.HTTPError) as error:
                    log.warning("pod %s/%s: token refresh failed: %s", self.namespace, self.pod_name, error)
                    continue
                if directory.name in self._sa_kubeconfigs:
                    self._write_sa_kubeconfig(directory.name, directory)

    def _write_sa_kubeconfig(self, volume: str, directory: Path) -> None:
        token = (directory / "token").read_text()
        path = self.pod_dir / f"{volume}.kubeconfig"
        ca_path = directory / "ca.crt"
        if not ca_path.exists():
            ca_path = Path(self.api.ca_path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {"server": self.api.server_url, "certificate-authority": str(ca_path)},
                }
            ],
            "users": [{"name": "service-account", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {
                        "cluster": "in-cluster",
                        "user": "service-account",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "in-cluster",
        }
        self._write_file(path, json.dumps(config, indent=2).encode(), 0o600)
        self._sa_kubeconfigs[volume] = path

    @staticmethod
    def _write_file(path: Path, content: bytes, mode: int) -> None:
        """Write atomically so a process never reads a half-written file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    # -- status ------------------------------------------------------------------------

    def _container_status(self, container: _Container) -> Json:
        if container.proc:
            state: Json = {"running": {"startedAt": container.started_at}}
        elif container.terminated:
            state = {"terminated": container.terminated}
        else:
            reason, message = container.waiting
            state = {
                "waiting": {
                    "reason": reason or "ContainerCreating",
                    **({"message": message} if message else {}),
                }
            }
        status: Json = {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": "",
            "ready": container.ready,
            "started": bool(container.proc) and container.startup_done,
            "restartCount": container.restart_count,
            "state": state,
            "lastState": {"terminated": container.last_terminated} if container.last_terminated else {},
        }
        if container.proc:
            status["containerID"] = f"nodeagent://{container.proc.pid}"
        elif container.terminated and "containerID" in container.terminated:
            status["containerID"] = container.terminated["containerID"]
        return status

    def _phase(self) -> str:
        if self._init_failed:
            return "Failed"
        if not self._init_done():
            return "Pending"
        exits = [c.terminated["exitCode"] for c in self.containers if c.terminated]
        if len(exits) == len(self.containers):
            return "Succeeded" if not any(exits) else "Failed"
        if any(c.runs for c in self.containers):
            return "Running"
        return "Pending"

    def _push_status(self, pod: Json) -> None:
        def condition(kind: str, ok: bool, reason: str = "") -> Json:
            cond: Json = {"type": kind, "status": "True" if ok else "False"}
            if reason and not ok:
                cond["reason"] = reason
            return cond

        phase = self._phase()
        ready = phase == "Running" and all(c.ready for c in self.containers)
        status: Json = {
            "phase": phase,
            "conditions": [
                condition("PodReadyToStartContainers", self._volumes_ready),
                condition("Initialized", self._init_done(), "ContainersNotInitialized"),
                condition("ContainersReady", ready, "ContainersNotReady"),
                condition("Ready", ready, "ContainersNotReady"),
                condition("PodScheduled", True),
            ],
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "initContainerStatuses": [self._container_status(c) for c in self.init_containers] or None,
            "containerStatuses": [self._container_status(c) for c in self.containers],
            # null removes a stale message in a merge patch
            "message": self._volume_error or None,
        }
        if status == self._last_status:
            return
        patch = json.loads(json.dumps(status))
        for cond in patch["conditions"]:
            previous = self._transitions.get(cond["type"])
            if previous is None or previous[0] != cond["status"]:
                previous = self._transitions[cond["type"]] = (cond["status"], _now())
            cond["lastTransitionTime"] = previous[1]
        try:
            self.api.merge_patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status", {"status": patch}
            )
        except ApiError as error:
            if error.status == 404:
                self._gone = True
                return
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.pod_name, error)
            return
        except httpx.HTTPError as error:
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.pod_name, error)
            return
        self._last_status = status


class NodeAgent:
    """Registers a Node and runs the pods bound to it as local processes (see the module docstring)."""

    def __init__(
        self,
        server_url: str,
        token: str,
        ca_path: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        logdir: str | os.PathLike[str],
        *,
        node_name: str = "e2e-node",
        bind_pods: bool = False,
        extra_env: dict[str, str] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.api = Api(server_url, token, ca_path)
        self.apiserver_port = httpx.URL(server_url).port or 443
        self.workdir = Path(workdir)
        self.logdir = Path(logdir)
        self.node_name = node_name
        self.bind_pods = bind_pods
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stop_grace = stop_grace
        self.base_env = self._base_env(extra_env or {})
        self._runners: dict[str, PodRunner] = {}  # pod uid -> runner
        self._finished: set[str] = set()  # uids of pods already run to deletion, never restarted
        self._ips_in_use: set[str] = set()
        # A random start keeps two agents on one machine (parallel test sessions)
        # from handing out the same addresses.
        self._next_ip = random.randrange(int(POD_IP_LAST) - int(POD_IP_FIRST))
        self._node: Json = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Last resort if stop() is never called and setpriv is unavailable.
        self._finalizer = weakref.finalize(self, _kill_all, self._runners, self._lock)

    @staticmethod
    def _base_env(extra: dict[str, str]) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        # Put the running interpreter's bin dir first so venv commands resolve
        # even when the venv was not activated.
        bin_dir = os.path.dirname(sys.executable)
        path = env.get("PATH", os.defpath).split(os.pathsep)
        env["PATH"] = os.pathsep.join([bin_dir, *(p for p in path if p != bin_dir)])
        if sys.prefix != sys.base_prefix:
            env["VIRTUAL_ENV"] = sys.prefix
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> NodeAgent:
        """Register the node and start watching pods in background threads."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._register_node()
        self._spawn(self._heartbeat_loop, "node-heartbeat")
        self._spawn(
            lambda: self.api.list_watch(
                "/api/v1/pods",
                {"fieldSelector": f"spec.nodeName={self.node_name}"},
                self._stop,
                self._on_pod_list,
                self._on_pod_event,
            ),
            "pod-watch",
        )
        if self.bind_pods:
            self._spawn(
                lambda: self.api.list_watch(
                    "/api/v1/pods",
                    {"fieldSelector": "spec.nodeName="},
                    self._stop,
                    self._bind_all,
                    self._on_unbound_event,
                ),
                "pod-binder",
            )
        return self

    def stop(self) -> None:
        """Stop watching and terminate every container process (SIGTERM, then SIGKILL)."""
        self._stop.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.shutdown()
        for runner in runners:
            runner.join(self.stop_grace + 5)
        # Runners busy with a long deletion grace period are not waited for.
        _kill_all(self._runners, self._lock)
        self.api.close()

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    # -- test API ------------------------------------------------------------------------

    def processes(self, namespace: str | None = None) -> dict[str, dict[str, int]]:
        """Running processes: ``{pod name: {container name: pid}}``.

        Each pid leads its own process group, so ``os.kill(pid, SIGKILL)``
        simulates a crashed container.
        """
        with self._lock:
            runners = list(self._runners.values())
        return {
            r.pod_name: pids
            for r in runners
            if (namespace is None or r.namespace == namespace) and (pids := r.pids())
        }

    def pid(self, pod: str, container: str | None = None, namespace: str | None = None) -> int:
        """The pid of *container* (default: the pod's only/first running container) of *pod*."""
        pids = self.processes(namespace).get(pod)
        if not pids:
            raise LookupError(f"no running process for pod {pod}")
        return pids[container] if container else next(iter(pids.values()))

    def _runner(self, pod: str, namespace: str | None) -> PodRunner:
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            if runner.pod_name == pod and (namespace is None or runner.namespace == namespace):
                return runner
        raise LookupError(f"pod {pod} does not run on this node")

    def pod_ip(self, pod: str, namespace: str | None = None) -> str:
        """The IP of a pod running on this node."""
        return self._runner(pod, namespace).pod_ip

    def volume_dir(self, pod: str, volume: str, namespace: str | None = None) -> Path:
        """The local directory standing in for *volume* of a pod running on this node."""
        runner = self._runner(pod, namespace)
        if volume not in runner.volumes:
            raise LookupError(f"pod {pod} has no volume {volume!r} (yet)")
        return runner.volumes[volume]

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.logdir / f"{namespace}_{pod}_{container}.log"

    def logs(self, pod: str, container: str | None = None, namespace: str | None = None) -> str:
        """The output of *pod*'s containers (all of them, each headed by its file name, if none given)."""
        pattern = f"{namespace or '*'}_{pod}_{container or '*'}.log"
        files = sorted(self.logdir.glob(pattern))
        if container:
            return "".join(f.read_text(errors="replace") for f in files)
        return "".join(f"==> {f.name} <==\n{f.read_text(errors='replace')}" for f in files)

    # -- node ----------------------------------------------------------------------------

    def _register_node(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
        }
        try:
            self.api.post(
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels}},
            )
        except ApiError as error:
            if error.status != 409:
                raise
        self._node = self.api.get(f"/api/v1/nodes/{self.node_name}")
        version = self.api.get("/version").get("gitVersion", "v0.0.0")
        capacity = {"cpu": "32", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        self.api.merge_patch(
            f"/api/v1/nodes/{self.node_name}/status",
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [
                        {"type": "InternalIP", "address": HOST_IP},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                    "nodeInfo": {
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                        "kernelVersion": platform.release(),
                        "osImage": "nodeagent",
                        "containerRuntimeVersion": "nodeagent://1",
                        "kubeletVersion": version,
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": labels["kubernetes.io/arch"],
                    },
                    "conditions": self._node_conditions(),
                }
            },
        )
        # The apiserver taints new nodes not-ready; the node lifecycle controller
        # would lift that once the node reports Ready, but tests need not run it.
        taints = self._node["spec"].get("taints") or []
        kept = [t for t in taints if t["key"] not in CONDITION_TAINTS]
        if kept != taints:
            self.api.merge_patch(f"/api/v1/nodes/{self.node_name}", {"spec": {"taints": kept or None}})
        self._renew_lease()

    @staticmethod
    def _node_conditions() -> list[Json]:
        now = _now()
        ok = {"status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now}
        return [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "node agent is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            },
            {"type": "MemoryPressure", "reason": "KubeletHasSufficientMemory", **ok},
            {"type": "DiskPressure", "reason": "KubeletHasNoDiskPressure", **ok},
            {"type": "PIDPressure", "reason": "KubeletHasSufficientPID", **ok},
        ]

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node_name}"
        try:
            self.api.merge_patch(
                path, {"spec": {"renewTime": _now_micro(), "holderIdentity": self.node_name}}
            )
        except ApiError as error:
            if error.status != 404:
                raise
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self.node_name,
                "uid": self._node["metadata"]["uid"],
            }
            self.api.post(
                f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node_name, "ownerReferences": [owner]},
                    "spec": {
                        "holderIdentity": self.node_name,
                        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                        "renewTime": _now_micro(),
                    },
                },
            )

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._renew_lease()
                self.api.merge_patch(
                    f"/api/v1/nodes/{self.node_name}/status",
                    {"status": {"conditions": self._node_conditions()}},
                )
            except (ApiError, httpx.HTTPError) as error:
                log.warning("node heartbeat failed: %s", error)

    # -- pods ----------------------------------------------------------------------------

    def _bind_all(self, pods: list[Json]) -> None:
        for pod in pods:
            self._bind(pod)

    def _on_unbound_event(self, kind: str, pod: Json) -> None:
        # DELETED here also means "left the selector", i.e. just bound.
        if kind != "DELETED":
            self._bind(pod)

    def _bind(self, pod: Json) -> None:
        meta = pod["metadata"]
        if pod["spec"].get("nodeName") or meta.get("deletionTimestamp"):
            return
        try:
            self.api.post(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": meta["name"], "uid": meta["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
                },
            )
        except ApiError as error:
            if error.status not in (404, 409):  # gone, or bound meanwhile
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], error)

    def _on_pod_list(self, pods: list[Json]) -> None:
        present = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            vanished = [r for uid, r in self._runners.items() if uid not in present]
        for runner in vanished:
            runner.gone()
        for pod in pods:
            self._on_pod_event("ADDED", pod)

    def _on_pod_event(self, kind: str, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            runner = self._runners.get(uid)
            if kind == "DELETED":
                if runner:
                    runner.gone()
                return
            if runner:
                runner.update(pod)
                return
            if self._stop.is_set() or uid in self._finished:
                return
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                # Finished before this agent started: nothing to run, only deletion to finish.
                if pod["metadata"].get("deletionTimestamp"):
                    meta = pod["metadata"]
                    threading.Thread(target=self._force_delete, args=(meta,), daemon=True).start()
                return
            runner = PodRunner(self, pod, self._allocate_ip())
            self._runners[uid] = runner
        runner.start()

    def _force_delete(self, meta: Json) -> None:
        with contextlib.suppress(ApiError):
            self.api.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
            )

    def _allocate_ip(self) -> str:
        """A pod IP no running pod of this agent holds (call with ``self._lock`` held).

        Addresses are handed out round-robin, so a new pod does not get the
        address a pod just released (whose ports may still be in TIME_WAIT).
        """
        span = int(POD_IP_LAST) - int(POD_IP_FIRST) + 1
        for _ in range(span):
            candidate = ipaddress.IPv4Address(int(POD_IP_FIRST) + self._next_ip % span)
            self._next_ip += 1
            ip = str(candidate)
            if candidate.packed[-1] not in (0, 255) and ip not in self._ips_in_use:
                self._ips_in_use.add(ip)
                return ip
        raise RuntimeError(f"all pod IPs {POD_IP_FIRST}-{POD_IP_LAST} are in use")

    def _runner_finished(self, runner: PodRunner) -> None:
        with self._lock:
            self._ips_in_use.discard(runner.pod_ip)
            if self._runners.get(runner.uid) is runner:
                del self._runners[runner.uid]
            if not runner._shutdown:
                self._finished.add(runner.uid)


def _kill_all(runners: dict[str, PodRunner], lock: threading.Lock) -> None:
    """SIGKILL the process group of every container still running."""
    with lock:
        pids = [pid for runner in runners.values() for pid in runner.pids().values()]
    for pid in pids:
        _killpg(pid, signal.SIGKILL)


def _from_kubeconfig(path: str) -> tuple[str, str, str]:
    """(server, token, CA file) of the current context of a token kubeconfig."""
    import yaml

    with open(path) as handle:
        config = yaml.safe_load(handle)
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ca_path = cluster.get("certificate-authority")
    if ca_path is None:
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as handle:
            handle.write(base64.b64decode(cluster["certificate-authority-data"]))
            ca_path = handle.name
    token = user.get("token") or Path(user["tokenFile"]).read_text().strip()
    return cluster["server"], token, ca_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run pods bound to a node as local processes (test use only)."
    )
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig with a bearer token (admin rights)")
    parser.add_argument("--node-name", default="e2e-node")
    parser.add_argument("--workdir", default=None, help="per-pod directories (default: a temp dir)")
    parser.add_argument("--logdir", default=None, help="container logs (default: <workdir>/logs)")
    parser.add_argument(
        "--bind-pods", action="store_true", help="bind unscheduled pods here (no kube-scheduler)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns everything else
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nodeagent-"))
    logdir = Path(args.logdir or workdir / "logs")
    server, token, ca_path = _from_kubeconfig(args.kubeconfig)
    agent = NodeAgent(
        server, token, ca_path, workdir, logdir, node_name=args.node_name, bind_pods=args.bind_pods
    )
    agent.start()
    log.info("node %s running pods; work dir %s, logs in %s", args.node_name, workdir, logdir)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    agent.stop()


if __name__ == "__main__":
    main()
