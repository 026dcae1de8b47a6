"""Record what a real node changes on this host, and put it back.

A kubelet, kube-proxy, containerd and the bridge CNI plugin change the host they run on: kernel
tunables, iptables chains, mounts (pod volumes, network namespaces, overlay snapshots), cgroups,
network links and a few directories at fixed paths. ``HostState.record()`` notes how each of these is
before the node starts; ``restore()`` removes what appeared since, puts the sysctls back, and returns a
list of what it could not restore (empty when the host is as found).

Only things the node tier makes are touched: chains named ``KUBE-*``/``CNI-*``, links named by the tier,
``kubepods`` cgroups, ``cni-*`` network namespaces, mounts under the tier's work directory, and fixed
directories that did not exist before. Another engineer's podman bridge or chains are left alone.

The record is also written to a JSON file while the node runs, so a session killed with SIGKILL (no
clean-up possible) is cleaned up by the next one (``recover_stale``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Kernel tunables the kubelet (setupKernelTunables), kube-proxy and the bridge plugin are known to set.
SYSCTLS: tuple[str, ...] = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
)
# Fixed paths the components create whatever their configured directories.
FIXED_DIRS: tuple[str, ...] = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/netns",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
    "/etc/kubernetes",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _chains(tool: str, table: str) -> list[str]:
    """Names of the chains of *table* (``iptables -S`` lines ``-N NAME``); empty if the tool is missing."""
    if not shutil.which(tool):
        return []
    result = subprocess.run([tool, "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=False)
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("-N ")]


def _rules(tool: str, table: str) -> list[str]:
    if not shutil.which(tool):
        return []
    result = subprocess.run([tool, "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if line.startswith("-A ")]


def _mountpoints() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces etc. octal-escaped.
        points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def _cgroup_children() -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    if not CGROUP_ROOT.is_dir():
        return children
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if hierarchy.is_dir() and not hierarchy.is_symlink():
            children[hierarchy.name] = sorted(p.name for p in hierarchy.iterdir() if p.is_dir())
    return children


def _links() -> list[str]:
    result = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in result.stdout.splitlines() if ":" in line]


@dataclass
class HostState:
    """What the node tier may change, as it was before the node started."""

    workdir: str
    links: list[str]  # link names the tier creates (the bridge); removed at restore
    sysctls: dict[str, str | None] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)  # "iptables nat" -> chains
    rules: dict[str, list[str]] = field(default_factory=dict)
    mountpoints: list[str] = field(default_factory=list)
    cgroups: dict[str, list[str]] = field(default_factory=dict)
    existing_links: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    fixed_dirs: dict[str, bool] = field(default_factory=dict)
    owner_pid: int = 0

    @classmethod
    def record(cls, workdir: Path, links: list[str]) -> HostState:
        state = cls(workdir=str(workdir), links=links, owner_pid=os.getpid())
        state.sysctls = {name: _read(Path("/proc/sys") / name) for name in SYSCTLS}
        for tool in IPTABLES:
            for table in TABLES:
                state.chains[f"{tool} {table}"] = _chains(tool, table)
                state.rules[f"{tool} {table}"] = _rules(tool, table)
        state.mountpoints = _mountpoints()
        state.cgroups = _cgroup_children()
        state.existing_links = _links()
        state.netns = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
        state.fixed_dirs = {path: os.path.lexists(path) for path in FIXED_DIRS}
        return state

    # -- persistence, for a later session to clean up after a SIGKILL ----------------------------------

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))

    # -- restore ------------------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Undo what the node changed; return what is still not as found (empty on success)."""
        self._kill_processes()
        self._unmount()
        self._remove_netns()
        self._remove_cgroups()
        self._remove_links()
        self._remove_chains()
        self._restore_sysctls()
        self._remove_fixed_dirs()
        return self.differences()

    def differences(self) -> list[str]:
        """What differs from the record, among the things the node tier makes."""
        problems = []
        for name, value in self.sysctls.items():
            now = _read(Path("/proc/sys") / name)
            if now != value:
                problems.append(f"sysctl {name} is {now!r}, was {value!r}")
        for key, before in self.chains.items():
            tool, table = key.split()
            extra = [c for c in _chains(tool, table) if c not in before and c.startswith(OUR_CHAIN_PREFIXES)]
            if extra:
                problems.append(f"{tool} table {table} still has chains {extra}")
        for key, before in self.rules.items():
            tool, table = key.split()
            extra = [r for r in _rules(tool, table) if r not in before and _mentions_ours(r)]
            if extra:
                problems.append(f"{tool} table {table} still has rules {extra}")
        mounts = [m for m in _mountpoints() if m not in self.mountpoints and self._ours(m)]
        if mounts:
            problems.append(f"mounts left: {mounts}")
        for hierarchy, children in _cgroup_children().items():
            extra = [
                c for c in children if c not in self.cgroups.get(hierarchy, []) and c.startswith("kubepods")
            ]
            if extra:
                problems.append(f"cgroups left in {hierarchy}: {extra}")
        links = [name for name in _links() if name in self.links or self._is_pod_veth(name)]
        if links:
            problems.append(f"network links left: {links}")
        if NETNS_DIR.is_dir():
            netns = [n for n in NETNS_DIR.iterdir() if n.name not in self.netns and n.name.startswith("cni-")]
            if netns:
                problems.append(f"network namespaces left: {[n.name for n in netns]}")
        for path, existed in self.fixed_dirs.items():
            if not existed and os.path.lexists(path):
                problems.append(f"{path} did not exist before and is still there")
        return problems

    def _ours(self, mountpoint: str) -> bool:
        prefixes = (
            self.workdir,
            "/run/netns/cni-",
            "/var/run/netns/cni-",
            "/var/lib/kubelet",
            "/run/containerd",
        )
        return mountpoint.startswith(prefixes)

    def _is_pod_veth(self, name: str) -> bool:
        # The bridge plugin names host-side veths "veth" + 8 hex digits; podman's are "veth0", "veth1", ...
        return name not in self.existing_links and name.startswith("veth") and len(name) == 12

    def _kill_processes(self) -> None:
        """SIGKILL what still runs from the work directory: after a SIGKILLed session, its containerd
        shims (daemons by design) and a kubelet or containerd that missed their parent-death signal."""
        marker = self.workdir.encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), 9)

    def _unmount(self) -> None:
        # Deepest first, lazily: a busy mount (a process that escaped) still goes from the tree.
        for point in sorted(set(_mountpoints()), key=len, reverse=True):
            if point not in self.mountpoints and self._ours(point):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _remove_netns(self) -> None:
        if not NETNS_DIR.is_dir():
            return
        for netns in NETNS_DIR.iterdir():
            if netns.name not in self.netns and netns.name.startswith("cni-"):
                subprocess.run(["umount", "-l", str(netns)], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    netns.unlink()

    def _remove_cgroups(self) -> None:
        for hierarchy, children in _cgroup_children().items():
            for child in children:
                if child in self.cgroups.get(hierarchy, []) or not child.startswith("kubepods"):
                    continue
                root = CGROUP_ROOT / hierarchy / child
                # Deepest first: a cgroup goes only once its children and processes have.
                directories = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
                for directory in [*directories, root]:
                    _remove_cgroup(directory)

    def _remove_links(self) -> None:
        for name in _links():
            if name in self.links or self._is_pod_veth(name):
                subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)

    def _remove_chains(self) -> None:
        for key, before in self.chains.items():
            tool, table = key.split()
            # Rules first (jumps into our chains from built-in or foreign chains), then our chains.
            for rule in _rules(tool, table):
                if rule not in self.rules.get(key, []) and _mentions_ours(rule):
                    # -S prints rules as shell words (comments quoted): the same words with -D delete it.
                    args = shlex.split(rule)
                    args[0] = "-D"
                    subprocess.run([tool, "-w", "5", "-t", table, *args], capture_output=True, check=False)
            ours = [c for c in _chains(tool, table) if c not in before and c.startswith(OUR_CHAIN_PREFIXES)]
            for chain in ours:
                subprocess.run([tool, "-w", "5", "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in ours:
                subprocess.run([tool, "-w", "5", "-t", table, "-X", chain], capture_output=True, check=False)

    def _restore_sysctls(self) -> None:
        for name, value in self.sysctls.items():
            path = Path("/proc/sys") / name
            if value is not None and _read(path) != value:
                with contextlib.suppress(OSError):
                    path.write_text(value)

    def _remove_fixed_dirs(self) -> None:
        for path, existed in self.fixed_dirs.items():
            if not existed and os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)


def _mentions_ours(rule: str) -> bool:
    return any(f" {prefix}" in rule or f"-j {prefix}" in rule for prefix in OUR_CHAIN_PREFIXES)


def _remove_cgroup(directory: Path, timeout: float = 10.0) -> None:
    """SIGKILL what still runs in *directory* (it escaped the runtime) and remove it, within *timeout*.

    A killed process leaves its cgroup a moment after the signal, so rmdir is retried until then.
    """
    deadline = time.monotonic() + timeout
    while directory.exists():
        for pid in (_read(directory / "cgroup.procs") or "").split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        try:
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # reported by differences()
            time.sleep(0.1)


def recover_stale(path: Path) -> list[str] | None:
    """Restore the host from the record a killed session left at *path*; None when there is none."""
    if not path.exists():
        return None
    state = HostState.load(path)
    if state.owner_pid and state.owner_pid != os.getpid() and Path(f"/proc/{state.owner_pid}").exists():
        raise RuntimeError(
            f"another test session (pid {state.owner_pid}) runs a node on this host ({path}); "
            "wait for it to finish: two kubelets on one host would fight over its cgroups and iptables"
        )
    problems = state.restore()
    if not problems:
        # Kept otherwise, so that a fixed clean-up can still use the record.
        path.unlink()
    return problems
