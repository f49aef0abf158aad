"""A local stand-in for the kubelet: Node objects, and pods as real local processes.

What it does, as the real kubelet does:
- registers Ready Node objects and renews their Leases, so the node lifecycle controller
  keeps them Ready;
- watches pods bound to its nodes (one shared watch), gives each a unique loopback pod IP,
  materialises secret/configMap/projected/downwardAPI/emptyDir/hostPath/PVC volumes, and runs
  each container whose image maps to a local command as a real process in a private mount
  namespace with the container's command, args, env, working dir and volume mounts;
- reports container states, exit codes, restarts (restartPolicy) and readiness (the
  readinessProbe, else the first containerPort accepting connections);
- on deletion sends SIGTERM, waits the grace period, kills, and deletes the object.

Images that cannot run here are simulated (Running/Ready without a process); a named
simulator registered with :func:`register_simulator` can add behaviour, which is how the
vCluster emulation hooks in. An image with no rule fails the pod with a clear message.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from . import podspec
from .kube import watch_forever
from .processes import die_with_parent

log = logging.getLogger("localcluster.kubelet")

PODNET_DIR = Path(__file__).parent / "podnet"
IMAGEFS_DIR = Path(__file__).parent / "imagefs"
KUBELET_VERSION = "v1.36.3"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
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


def register_simulator(name: str, factory) -> None:
    """Make ``simulate: <name>`` image rules create containers with ``factory(kubelet)``."""
    _SIMULATORS[name] = factory


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
    kubelet: "LocalKubelet"
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

    @property
    def pod_dir(self) -> Path:
        return self.kubelet.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"

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
                runtime.mounts = podspec.container_mounts(spec, volume_dirs)
                runtime.env = await self._env(spec, rule)
            else:
                factory = _SIMULATORS.get(rule.simulate)
                if factory is None:
                    raise podspec.PodSpecError(
                        f"image rule {rule.pattern!r} names simulator {rule.simulate!r}, "
                        f"which is not registered (known: {sorted(_SIMULATORS)})")
                runtime.simulator = factory(self.kubelet)
            return runtime
        except podspec.PodSpecError as e:
            await self._fail_until_deleted(f"container {spec['name']!r}: {e}", "Failed")
            return None

    async def _env(self, spec: dict, rule: podspec.ImageRule) -> dict[str, str]:
        k = self.kubelet
        secret_names, cm_names = podspec.referenced_objects({"spec": {"containers": [spec]}}, env_only=True)
        secrets = {n: _decode(await k.secret_data(self.namespace, n)) for n in secret_names}
        cms = {n: _decode(await k.config_map_data(self.namespace, n)) for n in cm_names}
        base = {
            "PATH": k.container_path,
            "HOME": "/root",
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "KUBERNETES_SERVICE_HOST": k.apiserver_host,
            "KUBERNETES_SERVICE_PORT": str(k.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(k.apiserver_port),
            # the image's ENV; "{imagefs}" is localcluster/imagefs, files images would contain
            **{key: value.replace("{imagefs}", str(IMAGEFS_DIR)) for key, value in rule.env},
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
            argv = podspec.expand_argv(runtime.argv, runtime.env)
            spec_file.write_text(json.dumps({
                "argv": argv, "env": runtime.env, "cwd": runtime.spec.get("workingDir") or "/",
                "mounts": [[m.source, m.target, m.read_only] for m in runtime.mounts],
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
            if code != 0:
                tail = (self.pod_dir / f"{runtime.spec['name']}.log").read_text(errors="replace")[-2000:]
                runtime.finished["message"] = tail
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
                ok = await self.kubelet.probe(kind, self.ip, port, path)
            if ok:
                runtime.ready = True
                await self.report()
                return
            await asyncio.sleep(0.2)

    async def _stop_all(self, grace: float) -> None:
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


def _decode(data: dict[str, bytes] | None) -> dict[str, str] | None:
    return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}


def _write_files(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


class LocalKubelet:
    def __init__(self, api: client.ApiClient, *, state_dir: Path, images: podspec.ImageMap,
                 nodes: list[str], apiserver_host: str, apiserver_port: int,
                 pod_cidr: str, container_path: str | None = None, node_ip: str = "127.0.0.1"):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.pods_dir = state_dir / "pods"
        self.images = images
        self.nodes = nodes
        self.node_ip = node_ip
        self.apiserver_host = apiserver_host
        self.apiserver_port = apiserver_port
        # this Python environment's scripts (jupyterhub-singleuser) first, as an image would have them
        self.container_path = container_path or os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")])
        self.ips = podspec.IPPool(pod_cidr)
        self.workers: dict[str, PodWorker] = {}
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None

    # ---- lookups used by pod workers --------------------------------------------------

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            s = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (s.data or {}).items()}

    async def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    async def claim_path(self, namespace: str, claim: str) -> str:
        try:
            pvc = await self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as e:
            if e.status == 404:
                raise podspec.PodSpecError(f"persistentvolumeclaim {claim!r} not found")
            raise
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise podspec.PodSpecError(f"persistentvolumeclaim {claim!r} is not bound yet")
        pv = await self.core.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise podspec.PodSpecError(
                f"persistentvolume {pv.metadata.name!r} has no hostPath or local source; "
                f"the local kubelet can only mount directories on this machine")
        Path(source.path).mkdir(parents=True, exist_ok=True)
        return source.path

    async def service_account_token(self, pod: dict, source: dict) -> str:
        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expiration_seconds=source.get("expirationSeconds", 3607),
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]),
        ))
        sa = pod["spec"].get("serviceAccountName") or "default"
        try:
            result = await self.core.create_namespaced_service_account_token(sa, pod["metadata"]["namespace"], request)
        except ApiException as e:
            raise podspec.PodSpecError(f"token for serviceaccount {sa!r}: {e.reason}")
        return result.status.token

    async def probe(self, kind: str, ip: str, port: int, path: str | None) -> bool:
        try:
            if kind == "tcp":
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 1)
                writer.close()
                return True
            async with self._http.get(f"http://{ip}:{port}{path}", timeout=aiohttp.ClientTimeout(total=1)) as r:
                return 200 <= r.status < 400
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError):
            return False

    async def event(self, pod: dict, kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                kind="Pod", api_version="v1", name=meta["name"], namespace=meta["namespace"], uid=meta["uid"]),
            reason=reason, message=message[:1024], type=kind,
            source=client.V1EventSource(component="kubelet", host=pod["spec"].get("nodeName")),
            first_timestamp=now(), last_timestamp=now(), count=1,
        )
        try:
            await self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as e:
            if e.status not in (403, 404):  # namespace terminating or gone
                log.debug("event for %s/%s: %s", meta["namespace"], meta["name"], e.reason)

    # ---- nodes ------------------------------------------------------------------------

    def _node_status(self) -> dict:
        t = now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHas{ok}", "lastHeartbeatTime": t,
             "lastTransitionTime": t}
            for kind, ok in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                             ("PIDPressure", "SufficientPID"))
        ]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "local kubelet is posting ready status",
                           "lastHeartbeatTime": t, "lastTransitionTime": t})
        capacity = {"cpu": str(os.cpu_count() or 2), "memory": "24Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_ip}],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "localcluster://1",
                "kernelVersion": os.uname().release, "osImage": "localcluster",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }

    async def register_nodes(self) -> None:
        for name in self.nodes:
            body = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "localcluster.dev/node": "true"}},
            }
            try:
                await self.core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
            await self.core.patch_node_status(name, {"status": self._node_status()})

    async def _heartbeat(self) -> None:
        while True:
            for name in self.nodes:
                try:
                    await self._renew_lease(name)
                    await self.core.patch_node_status(name, {"status": self._node_status()})
                except Exception:
                    log.exception("heartbeat for node %s failed", name)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _renew_lease(self, node: str) -> None:
        t = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": t}
        try:
            await self.coordination.patch_namespaced_lease(node, "kube-node-lease", {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            await self.coordination.create_namespaced_lease("kube-node-lease", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec})

    # ---- pods -------------------------------------------------------------------------

    async def _on_pod(self, event_type: str, pod_obj) -> None:
        pod = self.api.sanitize_for_serialization(pod_obj)
        meta, spec = pod["metadata"], pod["spec"]
        if spec.get("nodeName") not in self.nodes:
            return
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.deleting.set()
            return
        if worker is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
                return
            worker = PodWorker(self, meta["namespace"], meta["name"], uid, pod)
            self.workers[uid] = worker
            worker.task = asyncio.create_task(worker.run())
            worker.task.add_done_callback(lambda _t, uid=uid: self.workers.pop(uid, None))
        else:
            worker.pod["metadata"] = meta  # deletion timestamp and grace period
        if meta.get("deletionTimestamp"):
            worker.deleting.set()

    async def start(self) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession()
        await self.register_nodes()
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        # One watch for the pods of all local nodes; field selectors cannot OR several nodes.
        selector = {"field_selector": f"spec.nodeName={self.nodes[0]}"} if len(self.nodes) == 1 else {}
        self._tasks.append(asyncio.create_task(watch_forever(
            self.core.list_pod_for_all_namespaces, self._on_pod, what="pods", **selector)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for worker in list(self.workers.values()):
            if worker.task:
                worker.task.cancel()
        await asyncio.gather(*self._tasks, *(w.task for w in self.workers.values() if w.task),
                             return_exceptions=True)
        if self._http:
            await self._http.close()
