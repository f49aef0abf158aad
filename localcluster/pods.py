"""Pods on the local kubelet: one :class:`PodWorker` per pod, one :class:`ContainerRuntime`
per container (a local process or a simulation)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from . import podspec
from .podnetns import PodNetwork
from .processes import die_with_parent

if TYPE_CHECKING:
    from .kubelet import LocalKubelet

log = logging.getLogger("localcluster.kubelet")

PODNET_DIR = Path(__file__).parent / "podnet"
MAX_RESTART_BACKOFF = 30.0


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Simulator(Protocol):
    """Behaviour of a simulated container (one instance per container). ``volumes`` maps the
    pod's volume names to their directories, as the container would see them mounted."""

    async def start(self, pod: dict, container: dict, pod_ip: str, volumes: dict[str, str]) -> None: ...
    async def ready(self) -> bool: ...
    async def stop(self) -> None: ...


class _AlwaysReady:
    def __init__(self, kubelet):
        pass

    async def start(self, pod, container, pod_ip, volumes):
        pass

    async def ready(self):
        return True

    async def stop(self):
        pass


_SIMULATORS: dict[str, type] = {"plain": _AlwaysReady}


@dataclass
class ContainerRuntime:
    spec: dict
    rule: podspec.ImageRule
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[podspec.Mount] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    simulator: object | None = None
    started_at: str | None = None
    finished: dict | None = None      # terminated state
    waiting: dict | None = None       # waiting state
    last_termination: dict | None = None
    restart_count: int = 0
    ready: bool = False

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished is None

    def status(self) -> dict:
        if self.running:
            state = {"running": {"startedAt": self.started_at}}
        elif self.finished:
            state = {"terminated": self.finished}
        else:
            state = {"waiting": self.waiting or {"reason": "ContainerCreating"}}
        status = {
            "name": self.spec["name"], "image": self.spec.get("image", ""),
            "imageID": "", "containerID": f"local://{id(self):x}",
            "ready": self.ready and self.running, "started": self.running,
            "restartCount": self.restart_count, "state": state,
        }
        if self.last_termination:
            status["lastState"] = {"terminated": self.last_termination}
        return status


@dataclass
class PodWorker:
    kubelet: LocalKubelet
    namespace: str
    name: str
    uid: str
    pod: dict
    ip: str = ""
    containers: list[ContainerRuntime] = field(default_factory=list)
    init_done: bool = False
    deleting: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    failure: str | None = None
    volume_dirs: dict[str, str] = field(default_factory=dict)
    network: PodNetwork | None = None   # a network namespace of its own (image rule network: own)
    resolv: str | None = None   # its /etc/resolv.conf; None: the node's (podspec.resolv_conf)

    @property
    def pod_dir(self) -> Path:
        return self.kubelet.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"

    def container_home(self, name: str) -> Path:
        """``HOME`` of container ``name`` unless its image or spec sets one: a container's
        ``/root`` is its own, and pods here share this machine's, where a vCluster leaves a
        ``~/.kube/config`` that the next one read (docs/real-vcluster.md)."""
        return self.pod_dir / f"{name}.home"

    def _termination_message(self, name: str) -> Path:
        """The file a container may write its termination message to (mounted at its
        terminationMessagePath), emptied at every start."""
        return self.pod_dir / f"{name}.termination-log"

    def private_dir(self, name: str, target: str) -> Path:
        """The empty, writable stand-in for directory ``target`` of container ``name``'s image
        (image rule ``private``), inside its home: emptied with it at each start."""
        return self.container_home(name) / ".private" / target.strip("/").replace("/", "_")

    # ---- status ----------------------------------------------------------------------

    def _phase(self) -> str:
        if self.failure:
            return "Failed"
        if not self.init_done or not self.containers:
            return "Pending"
        if any(c.running or (c.finished is None) for c in self.containers):
            return "Running" if any(c.running for c in self.containers) else "Pending"
        return "Succeeded" if all(c.finished["exitCode"] == 0 for c in self.containers) else "Failed"

    async def report(self) -> None:
        ready = bool(self.containers) and all(c.ready and c.running for c in self.containers)
        t = now()

        def cond(kind, ok, reason=None):
            c = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": t}
            if reason and not ok:
                c["reason"] = reason
            return c

        status = {
            "phase": self._phase(),
            "hostIP": self.kubelet.node_ip, "hostIPs": [{"ip": self.kubelet.node_ip}],
            "conditions": [
                cond("PodReadyToStartContainers", bool(self.ip)),
                cond("Initialized", self.init_done, "ContainersNotInitialized"),
                cond("ContainersReady", ready, "ContainersNotReady"),
                cond("Ready", ready, "ContainersNotReady"),
            ],
            "containerStatuses": [c.status() for c in self.containers] or [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                 "started": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating", "message": self.failure or ""}}}
                for c in self.pod["spec"]["containers"]
            ],
            "startTime": self.pod.get("status", {}).get("startTime") or t,
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.failure:
            status["reason"], status["message"] = "LocalKubeletError", self.failure
        try:
            await self.kubelet.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status})
        except ApiException as e:
            if e.status != 404:
                log.warning("status of %s/%s: %s", self.namespace, self.name, e.reason)

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            await self._stop_all(grace=0)
            raise
        except Exception as e:  # a bug here must not take the kubelet down
            log.exception("pod %s/%s failed", self.namespace, self.name)
            self.failure = f"local kubelet error: {e}"
            await self.report()
            await self.deleting.wait()
        await self._finish_deletion()

    async def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        host_network = self.pod["spec"].get("hostNetwork")
        self.ip = self.kubelet.node_ip if host_network else self.kubelet.ips.allocate()
        self.pod.setdefault("status", {})["podIP"] = self.ip
        await self.report()
        volume_dirs = await self._prepare_volumes()
        if volume_dirs is None:
            return
        self.resolv = podspec.resolv_conf(self.pod, self.kubelet.cluster_dns)
        if self.resolv is not None:
            (self.pod_dir / "resolv.conf").write_text(self.resolv)
        if not host_network and self._wants_own_network():
            await self._create_network()
        self.volume_dirs = volume_dirs
        for spec in self.pod["spec"].get("initContainers") or []:
            runtime = await self._create(spec, volume_dirs)
            if runtime is None:
                return
            if not await self._run_to_completion(runtime):
                return
        self.init_done = True
        runtimes = []
        for spec in self.pod["spec"]["containers"]:
            runtime = await self._create(spec, volume_dirs)
            if runtime is None:
                return
            runtimes.append(runtime)
        self.containers = runtimes
        for runtime in runtimes:
            await self._start(runtime)
        await self.report()
        supervisors = [asyncio.create_task(self._supervise(r)) for r in runtimes]
        try:
            await self.deleting.wait()
        finally:
            for s in supervisors:
                s.cancel()
            await asyncio.gather(*supervisors, return_exceptions=True)

    def _all_containers(self) -> list[dict]:
        return list(self.pod["spec"].get("initContainers") or []) + list(self.pod["spec"]["containers"])

    def _wants_own_network(self) -> bool:
        def own(spec: dict) -> bool:
            try:
                return self.kubelet.images.rule_for(spec.get("image", "")).own_network
            except podspec.PodSpecError:
                return False   # reported when the container is created
        return any(own(spec) for spec in self._all_containers())

    async def _create_network(self) -> None:
        """Relays in for every port the pod declares or probes or its images serve; out to the
        host API, the cluster DNS and the addresses its containers are given."""
        inbound = {(p["containerPort"], p.get("protocol", "TCP"))
                   for spec in self._all_containers() for p in spec.get("ports") or []}
        for spec in self.pod["spec"]["containers"]:
            target = podspec.readiness_target(spec)
            if target is not None:
                inbound.add((podspec.resolve_port(spec, target[1]), "TCP"))
            with contextlib.suppress(podspec.PodSpecError):   # reported when the container is created
                inbound.update(self.kubelet.images.rule_for(spec.get("image", "")).ports)
        k = self.kubelet
        apis = {(k.apiserver_host, k.apiserver_port)} | podspec.kubernetes_api_addresses(self.pod)
        outbound = {(host, port, "TCP") for host, port in apis}
        resolv = self.resolv if self.resolv is not None else k.node_resolv
        for server in set(podspec.nameservers(resolv)) | ({k.cluster_dns} if k.cluster_dns else set()):
            outbound |= {(server, 53, "UDP"), (server, 53, "TCP")}
        self.network = await PodNetwork.create(f"lc-{self.uid}", self.ip, inbound, outbound)

    async def _fail_until_deleted(self, message: str, reason: str = "FailedCreate") -> None:
        self.failure = message
        await self.kubelet.event(self.pod, "Warning", reason, message)
        await self.report()
        await self.deleting.wait()

    async def _prepare_volumes(self) -> dict[str, str] | None:
        """Resolve every volume to a directory, waiting (like FailedMount) for missing inputs."""
        delay = 0.5
        while not self.deleting.is_set():
            try:
                return await self._materialise_volumes()
            except podspec.PodSpecError as e:
                msg = f"MountVolume failed: {e}"
                self.failure = None
                log.info("%s/%s: %s (retrying)", self.namespace, self.name, msg)
                await self.kubelet.event(self.pod, "Warning", "FailedMount", msg)
                try:
                    await asyncio.wait_for(self.deleting.wait(), delay)
                except asyncio.TimeoutError:
                    delay = min(delay * 2, 5)
        return None

    async def _materialise_volumes(self) -> dict[str, str]:
        k = self.kubelet
        secret_names, cm_names = podspec.referenced_objects(self.pod)
        secrets = {n: await k.secret_data(self.namespace, n) for n in secret_names}
        config_maps = {n: await k.config_map_data(self.namespace, n) for n in cm_names}
        plan = podspec.plan_volumes(
            self.pod,
            secrets={n: d for n, d in secrets.items() if d is not None},
            config_maps={n: d for n, d in config_maps.items() if d is not None},
        )
        dirs: dict[str, str] = {}
        vol_root = self.pod_dir / "volumes"
        for name, files in plan.files.items():
            dirs[name] = str(_write_files(vol_root / name, files))
        for name in plan.empty_dirs:
            path = vol_root / name
            path.mkdir(parents=True, exist_ok=True)
            dirs[name] = str(path)
        dirs.update(plan.host_paths)
        for name, claim in plan.claims.items():
            dirs[name] = await k.claim_path(self.namespace, claim)
        for name, sources in plan.tokens.items():
            for source in sources:
                token = await k.service_account_token(self.pod, source)
                path = vol_root / name / source["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(token)
            dirs.setdefault(name, str(vol_root / name))
        return dirs

    async def _create(self, spec: dict, volume_dirs: dict[str, str]) -> ContainerRuntime | None:
        try:
            rule = self.kubelet.images.rule_for(spec.get("image", ""))
            runtime = ContainerRuntime(spec, rule)
            if rule.run:
                runtime.argv = rule.argv(spec)
                runtime.mounts = [podspec.Mount(source, target, True) for target, source in rule.content]
                runtime.mounts += [podspec.Mount(str(self.private_dir(spec["name"], target)), target, False)
                                   for target in rule.private]
                runtime.mounts += podspec.container_mounts(spec, volume_dirs)
                runtime.mounts.append(podspec.Mount(
                    str(self._termination_message(spec["name"])),
                    spec.get("terminationMessagePath") or "/dev/termination-log", False))
                if self.resolv is not None:
                    runtime.mounts.append(podspec.Mount(str(self.pod_dir / "resolv.conf"), "/etc/resolv.conf", True))
                runtime.env = await self._env(spec, rule)
            else:
                factory = _SIMULATORS.get(rule.simulate)
                if factory is None:
                    raise podspec.PodSpecError(
                        f"image rule {rule.pattern!r} names simulator {rule.simulate!r}, "
                        f"which does not exist (known: {sorted(_SIMULATORS)})")
                runtime.simulator = factory(self.kubelet)
            return runtime
        except podspec.ImageNotMapped as e:
            await self._wait_for_image(spec, str(e))
            return None
        except podspec.PodSpecError as e:
            await self._fail_until_deleted(f"container {spec['name']!r}: {e}", "Failed")
            return None

    async def _wait_for_image(self, spec: dict, message: str) -> None:
        """The container waits as for an image that cannot be pulled; its pod stays Pending."""
        runtime = ContainerRuntime(spec, podspec.ImageRule(spec.get("image", "")))
        runtime.waiting = {"reason": "ImagePullBackOff", "message": message}
        self.containers = [runtime]
        await self.kubelet.event(self.pod, "Warning", "Failed", f"Failed to pull image {spec.get('image')!r}: {message}")
        await self.report()
        await self.deleting.wait()

    async def _env(self, spec: dict, rule: podspec.ImageRule) -> dict[str, str]:
        k = self.kubelet
        secret_names, cm_names = podspec.referenced_objects({"spec": {"containers": [spec]}}, env_only=True)
        secrets = {n: _decode(await k.secret_data(self.namespace, n)) for n in secret_names}
        cms = {n: _decode(await k.config_map_data(self.namespace, n)) for n in cm_names}
        base = {
            "PATH": k.container_path,
            "HOME": str(self.container_home(spec["name"])),
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "KUBERNETES_SERVICE_HOST": k.apiserver_host,
            "KUBERNETES_SERVICE_PORT": str(k.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(k.apiserver_port),
            **dict(rule.env),   # the image's ENV
        }
        env = podspec.container_env(
            spec, self.pod,
            secrets={n: d for n, d in secrets.items() if d is not None},
            config_maps={n: d for n, d in cms.items() if d is not None},
            base=base,
        )
        env["LOCALCLUSTER_POD_IP"] = self.ip
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PODNET_DIR), env.get("PYTHONPATH")]))
        return env

    async def _start(self, runtime: ContainerRuntime) -> None:
        name = runtime.spec["name"]
        if runtime.simulator is not None:
            await runtime.simulator.start(self.pod, runtime.spec, self.ip, self.volume_dirs)
        else:
            spec_file = self.pod_dir / f"{name}.exec.json"
            home = self.container_home(name)
            shutil.rmtree(home, ignore_errors=True)   # empty at every start, as a container's writable layer
            home.mkdir(parents=True)
            for target in runtime.rule.private:
                self.private_dir(name, target).mkdir(parents=True)
            self._termination_message(name).write_text("")
            argv = podspec.expand_argv(runtime.argv, runtime.env)
            spec_file.write_text(json.dumps({
                "argv": argv, "env": runtime.env, "cwd": runtime.spec.get("workingDir") or "/",
                "mounts": [[m.source, m.target, m.read_only] for m in runtime.mounts],
                "netns": self.network.path if self.network else None,
            }))
            log_file = open(self.pod_dir / f"{name}.log", "ab")
            try:
                runtime.process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "localcluster.podexec", str(spec_file),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                    cwd=str(Path(__file__).parent.parent), preexec_fn=die_with_parent,
                    start_new_session=True,
                )
            finally:
                log_file.close()
        runtime.started_at, runtime.finished, runtime.waiting, runtime.ready = now(), None, None, False
        await self.kubelet.event(self.pod, "Normal", "Started", f"Started container {name}")

    async def _run_to_completion(self, runtime: ContainerRuntime) -> bool:
        self.containers = [runtime]
        await self._start(runtime)
        await self.report()
        code = await self._wait_exit(runtime)
        self.containers = []
        if code != 0:
            await self._fail_until_deleted(
                f"init container {runtime.spec['name']!r} exited with code {code}", "Failed")
            return False
        return True

    async def _wait_exit(self, runtime: ContainerRuntime) -> int:
        if runtime.process is None:
            return 0  # simulated init containers complete at once
        waiter = asyncio.create_task(runtime.process.wait())
        deleting = asyncio.create_task(self.deleting.wait())
        await asyncio.wait({waiter, deleting}, return_when=asyncio.FIRST_COMPLETED)
        deleting.cancel()
        if not waiter.done():
            waiter.cancel()
            return -1
        return waiter.result()

    async def _supervise(self, runtime: ContainerRuntime) -> None:
        """Track one container: readiness while it runs, exit code and restarts after."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        backoff = 1.0
        while True:
            if runtime.process is None:  # simulated: readiness until deleted
                while not runtime.ready:
                    runtime.ready = await runtime.simulator.ready()
                    if runtime.ready:
                        await self.report()
                    else:
                        await asyncio.sleep(0.2)
                await asyncio.Event().wait()
            prober = asyncio.create_task(self._probe_until_ready(runtime))
            code = await runtime.process.wait()
            prober.cancel()
            runtime.ready = False
            runtime.finished = {
                "exitCode": code if code >= 0 else 128 - code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": runtime.started_at, "finishedAt": now(),
            }
            message = self._termination_message(runtime.spec["name"]).read_text(errors="replace")[:4096]
            if not message and code != 0:   # as FallbackToLogsOnError: the log's tail
                message = (self.pod_dir / f"{runtime.spec['name']}.log").read_text(errors="replace")[-2000:]
            if message:
                runtime.finished["message"] = message
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            log.info("%s/%s container %s exited %s (restart: %s)", self.namespace, self.name,
                     runtime.spec["name"], code, restart)
            if not restart:
                await self.report()
                return
            runtime.last_termination = runtime.finished
            runtime.finished = None
            runtime.started_at = None
            runtime.waiting = {"reason": "CrashLoopBackOff",
                               "message": f"back-off {backoff:.0f}s restarting failed container"}
            await self.report()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_RESTART_BACKOFF)
            runtime.restart_count += 1
            await self._start(runtime)
            await self.report()

    async def _probe_until_ready(self, runtime: ContainerRuntime) -> None:
        target = podspec.readiness_target(runtime.spec)
        while not runtime.ready:
            if target is None:
                ok = True
            else:
                kind, port, path = target
                port = podspec.resolve_port(runtime.spec, port)
                if kind == "tcp" and self.network:   # its relay accepts whether or not anyone listens
                    ok = await self.network.connectable(port)
                else:
                    ok = await self.kubelet.probe(kind, self.ip, port, path)
            if ok:
                runtime.ready = True
                await self.report()
                return
            await asyncio.sleep(0.2)

    async def _stop_all(self, grace: float) -> None:
        """Every container (SIGTERM, ``grace`` seconds, SIGKILL), then the pod's own network."""
        async def stop(runtime: ContainerRuntime):
            if runtime.simulator is not None:
                await runtime.simulator.stop()
                return
            proc = runtime.process
            if proc is None or proc.returncode is not None:
                return
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), grace)
            except (ProcessLookupError, PermissionError):
                pass
            except asyncio.TimeoutError:
                await self.kubelet.event(self.pod, "Warning", "Killing",
                                         f"container {runtime.spec['name']} ignored SIGTERM for {grace:.0f}s; killing")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()

        await asyncio.gather(*(stop(r) for r in self.containers), return_exceptions=True)
        if self.network:   # its containers are gone: the namespace and its relays go too
            await self.network.remove()
            self.network = None

    async def _finish_deletion(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        for runtime in self.containers:
            await self.kubelet.event(self.pod, "Normal", "Killing", f"Stopping container {runtime.spec['name']}")
        await self._stop_all(float(grace))
        if self.ip != self.kubelet.node_ip:
            self.kubelet.ips.release(self.ip)
        try:
            await self.kubelet.core.delete_namespaced_pod(
                self.name, self.namespace,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s/%s: %s", self.namespace, self.name, e.reason)
        shutil.rmtree(self.pod_dir / "volumes", ignore_errors=True)
        for home in self.pod_dir.glob("*.home"):
            shutil.rmtree(home, ignore_errors=True)


def _decode(data: dict[str, bytes] | None) -> dict[str, str] | None:
    return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}


def _write_files(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root
