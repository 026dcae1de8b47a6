"""`durable-agents dev` rolls a changed manifest out the way the operator does, on a laptop.

Every agent is served as a version of its Worker Deployment (see `versioning`). `dev` checks the manifest
files once a second; when one changes, the new config starts a worker for its version next to the old
one, the new version becomes current (new runs start on it), and the old worker keeps serving the runs
pinned to it until none is open (runs waiting for an approval included), then stops. Changing the file
back while the old version still drains makes it current again at once (a rollback). Before an
`AutoUpgrade` agent's change takes traffic the replay gate (`durable-agents replay`, in a process of its
own) replays its recent runs, which would move to the new code, and a change they cannot survive is
refused: the old version stays current. A `Pinned` agent's runs never move, so its changes are not
gated (`durable-agents replay` still shows which runs would not replay). A drained version is deleted in
Temporal once the server no longer lists its stopped worker (the server caps the versions it keeps).

Only the manifest is watched: Python modules a manifest names are already imported in this process, so a
change to them needs a restart of `dev` (a new image, in a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Worker

from durable_agents_api.config import RuntimeConfig, VersioningSpec
from durable_agents_api.errors import DurableAgentsError
from durable_agents_api.manifest import LoadedManifest, load_manifests, runtime_config
from durable_agents_runtime import served_agents

__all__ = ["DRAIN_POLL_SECONDS", "WATCH_SECONDS", "DevRollout", "versioned"]

WATCH_SECONDS = 1.0
"""How often the manifest files are checked for changes."""
DRAIN_POLL_SECONDS = 1.0
"""How often a draining version's open runs are counted."""
GATE_TIMEOUT_SECONDS = 120.0
"""Longest the replay gate of one change may take before the change is refused."""
RETIRE_POLL_SECONDS = 15.0
"""How often deleting a drained version in Temporal is tried again."""
RETIRE_SECONDS = 420.0
"""How long deleting a drained version is tried: the dev server refuses while it lists the stopped
worker's pollers (about five minutes)."""


def versioned(manifest: LoadedManifest, config: RuntimeConfig) -> RuntimeConfig:
    """`config` as a version of its Worker Deployment, with the manifest's `spec.versioning` behaviour."""
    spec = manifest.agent.spec.versioning
    return config.model_copy(update={"versioning": VersioningSpec(behavior=spec.behavior)})


@dataclass
class _Version:
    config: RuntimeConfig
    version: WorkerDeploymentVersion
    worker: Worker
    task: asyncio.Task[None]
    drain: asyncio.Task[None] | None = None


@dataclass
class _Agent:
    path: Path
    manifest: LoadedManifest
    current: _Version
    draining: list[_Version] = field(default_factory=list)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


class DevRollout:
    """The versioned workers of a `dev` session: started, rolled on manifest changes, drained, stopped."""

    def __init__(
        self,
        client: Client,
        *,
        address: str,
        namespace: str,
        say: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self._client = client
        self._address = address
        self._namespace = namespace
        self._say = say
        self._warn = warn
        self._agents: dict[str, _Agent] = {}
        self._mtimes: dict[Path, float | None] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(
        self, manifests: list[LoadedManifest], configs: list[RuntimeConfig], agents: list[Any]
    ) -> None:
        """Serve every manifest as the current version of its agent."""
        for manifest, config, agent in zip(manifests, configs, agents, strict=True):
            path = Path(manifest.source.split(" (document ")[0])
            self._mtimes.setdefault(path, _mtime(path))
            version = await self._serve(versioned(manifest, config), agent)
            self._agents[config.temporal.task_queue] = _Agent(path, manifest, version)
            await self._warn_about_unserved_versions(version)

    def describe(self) -> list[str]:
        """One line per agent: its task queue and the version serving new runs."""
        return [
            f"Worker: agent {a.current.config.agent.name} on task queue {queue} (version "
            f"{a.current.version.build_id}, {a.manifest.agent.spec.versioning.behavior})"
            for queue, a in self._agents.items()
        ]

    async def watch(self, stopping: asyncio.Event) -> None:
        """Check the manifests every `WATCH_SECONDS` until `stopping` is set; roll out what changed."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), WATCH_SECONDS)
            if stopping.is_set():
                return
            for path, seen in list(self._mtimes.items()):
                now = _mtime(path)
                if now is not None and now != seen:
                    self._mtimes[path] = now
                    await self._reload(path)

    async def shutdown(self) -> None:
        """Stop every worker, old and new, at once (their graceful shutdown times must not add up)."""
        versions = [v for a in self._agents.values() for v in (a.current, *a.draining)]
        for version in versions:
            if version.drain is not None:
                version.drain.cancel()
        for task in self._retiring:
            task.cancel()
        await asyncio.gather(*(self._stop(v) for v in versions))

    # --- internals --------------------------------------------------------------------------------------

    async def _serve(self, config: RuntimeConfig, agent: Any) -> _Version:
        from durable_agents_runtime.versioning import promote, worker_version
        from durable_agents_runtime.worker import create_worker

        version = worker_version(config)
        assert version is not None
        worker = create_worker(self._client, config, agent)
        task = asyncio.create_task(worker.run())
        try:
            await promote(self._client, version)
        except BaseException:
            await self._stop(_Version(config, version, worker, task))
            raise
        return _Version(config, version, worker, task)

    async def _warn_about_unserved_versions(self, served: _Version) -> None:
        """Runs pinned to a version this session does not serve (the manifest changed while `dev` was
        stopped) wait for a worker of that version: say so, with what to do."""
        from durable_agents_runtime.versioning import describe_deployment, pinned_open_runs

        state = await describe_deployment(self._client, served.version.deployment_name)
        for other in state.versions if state is not None else ():
            if other.build_id == served.version.build_id:
                continue
            stranded = WorkerDeploymentVersion(served.version.deployment_name, other.build_id)
            count = await pinned_open_runs(self._client, stranded)
            if count:
                self._warn(
                    f"{count} open run(s) of agent {served.config.agent.name} are pinned to version "
                    f"{other.build_id}, which this dev does not serve (its manifest changed while dev was "
                    "stopped): they wait for a worker of that version. Restart dev with the manifest they "
                    "started with to finish them, or terminate them"
                )

    async def _stop(self, version: _Version) -> None:
        if not version.task.done():
            await version.worker.shutdown()
        with contextlib.suppress(Exception):
            await version.task
        served_agents.unregister(version.config.temporal.task_queue, version.version.build_id)

    async def _reload(self, path: Path) -> None:
        from durable_agents_runtime.agents import build_agent
        from durable_agents_runtime.versioning import build_id

        try:
            manifests = load_manifests([path])
        except DurableAgentsError as exc:
            self._warn(f"{path} changed but cannot be used, the running versions keep serving: {exc}")
            return
        for manifest in manifests:
            config = versioned(
                manifest, runtime_config(manifest, address=self._address, namespace=self._namespace)
            )
            agent_state = self._agents.get(config.temporal.task_queue)
            if agent_state is None:
                self._warn(
                    f"{manifest.source}: agent {manifest.name} (task queue {config.temporal.task_queue}) is "
                    "new; restart dev to serve it"
                )
                continue
            wanted = build_id(config)
            if wanted == agent_state.current.version.build_id:
                continue
            previous = next((v for v in agent_state.draining if v.version.build_id == wanted), None)
            if previous is not None:
                await self._roll_back(manifest, agent_state, previous)
                continue
            try:
                agent = build_agent(config)
                if not await self._gate(path, config, agent_state):
                    continue
                new = await self._serve(config, agent)
            except DurableAgentsError as exc:
                self._warn(
                    f"{manifest.source}: the new version of agent {manifest.name} cannot start, version "
                    f"{agent_state.current.version.build_id} keeps serving: {exc}"
                )
                continue
            old = agent_state.current
            agent_state.manifest, agent_state.current = manifest, new
            agent_state.draining.append(old)
            self._say(
                f"{manifest.source} changed: version {new.version.build_id} of agent {manifest.name} serves "
                f"new runs; version {old.version.build_id} drains its pinned runs"
            )
            old.drain = asyncio.create_task(self._drain(agent_state, old))

    async def _roll_back(self, manifest: LoadedManifest, agent_state: _Agent, previous: _Version) -> None:
        """The manifest went back to a version still draining: it is current again at once (its worker never
        stopped), and the version it replaces drains in turn."""
        from durable_agents_runtime.versioning import promote

        if previous.drain is not None:
            previous.drain.cancel()
            previous.drain = None
        try:
            await promote(self._client, previous.version)
        except DurableAgentsError as exc:
            self._warn(
                f"cannot roll agent {manifest.name} back to version {previous.version.build_id}: {exc}"
            )
            previous.drain = asyncio.create_task(self._drain(agent_state, previous))
            return
        replaced = agent_state.current
        agent_state.draining.remove(previous)
        agent_state.manifest, agent_state.current = manifest, previous
        agent_state.draining.append(replaced)
        self._say(
            f"{manifest.source} changed back: version {previous.version.build_id} of agent {manifest.name} "
            f"serves new runs again (rollback); version {replaced.version.build_id} drains its pinned runs"
        )
        replaced.drain = asyncio.create_task(self._drain(agent_state, replaced))

    async def _gate(self, path: Path, config: RuntimeConfig, agent_state: _Agent) -> bool:
        histories = agent_state.manifest.agent.spec.versioning.replay_histories
        behavior = config.versioning.behavior if config.versioning is not None else "Pinned"
        if histories == 0 or behavior == "Pinned":
            return True  # pinned runs finish on their own version: what the new code replays cannot hurt them
        # In a process of its own: pydantic-ai keeps each run's event stream in a process-wide map keyed by
        # run id, so replaying a run this process also serves would take the live run's stream away.
        command = [
            sys.executable,
            "-m",
            "durable_agents_cli",
            "replay",
            agent_state.manifest.agent.metadata.name,
        ]
        command += ["-f", str(path), "--address", self._address, "--namespace", self._namespace]
        command += ["--histories", str(histories)]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), GATE_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            self._warn(
                f"the replay gate of agent {config.agent.name} did not finish within "
                f"{GATE_TIMEOUT_SECONDS:g}s; version {agent_state.current.version.build_id} stays current"
            )
            return False
        report = output.decode(errors="replace").strip()
        if process.returncode == 0:
            return True
        self._warn(f"{report}\nVersion {agent_state.current.version.build_id} stays current")
        return False

    async def _drain(self, agent_state: _Agent, old: _Version) -> None:
        from durable_agents_runtime.versioning import pinned_open_runs

        started = time.monotonic()
        while True:
            try:
                open_runs = await pinned_open_runs(self._client, old.version)
            except Exception as exc:  # a visibility hiccup: say so and keep the worker
                self._warn(f"cannot count the open runs of version {old.version.build_id}: {exc}")
                open_runs = -1
            if open_runs == 0:
                break
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        await self._stop(old)
        agent_state.draining.remove(old)
        self._say(
            f"version {old.version.build_id} of agent {old.config.agent.name} drained in "
            f"{time.monotonic() - started:.1f}s; its worker stopped"
        )
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: _Version) -> None:
        """Delete the drained version in Temporal, trying every `RETIRE_POLL_SECONDS` for at most
        `RETIRE_SECONDS`; warn with the command to do it later if the server keeps refusing."""
        from durable_agents_runtime.versioning import delete_version

        stopped = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(delete_version(self._client, old.version), RETIRE_POLL_SECONDS)
            except (DurableAgentsError, TimeoutError) as exc:
                if time.monotonic() - stopped + RETIRE_POLL_SECONDS > RETIRE_SECONDS:
                    version = old.version
                    self._warn(
                        f"version {version.build_id} of agent {old.config.agent.name} could not be deleted "
                        f"in Temporal within {RETIRE_SECONDS:g}s ({exc or 'no answer'}); delete it later: "
                        f"temporal worker deployment delete-version --deployment-name "
                        f"{version.deployment_name} --build-id {version.build_id}"
                    )
                    return
                await asyncio.sleep(RETIRE_POLL_SECONDS)
                continue
            self._say(
                f"version {old.version.build_id} of agent {old.config.agent.name} deleted in Temporal "
                f"{time.monotonic() - stopped:.1f}s after its worker stopped"
            )
            return
