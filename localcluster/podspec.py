"""Pure functions the local kubelet uses to turn a pod spec into something it can run.

Nothing here talks to the API server: lookups are passed in as plain mappings, so every rule
is unit-tested without a cluster.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class PodSpecError(Exception):
    """A pod cannot be run locally; the message is shown on the pod's status and events."""


class ImageNotMapped(PodSpecError):
    """No rule says how to run the image: the container waits, as for an image that cannot be
    pulled (``ImagePullBackOff``), instead of failing its pod (a controller would re-create a
    failed pod again and again)."""


# ---------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class ImageRule:
    """How to run containers of images matching ``pattern`` (an fnmatch glob).

    ``run``: the container runs as a local process; ``entrypoint`` and ``cmd`` stand in for the
    image's ENTRYPOINT and CMD, combined with the container's ``command``/``args`` as Kubernetes
    does. ``own_network``: the image's programs bind fixed ports, so its pod gets a network
    namespace of its own (``localcluster/podnetns.py``). ``content``: what the image holds, as
    (path in the container, path on this machine) pairs, bound read-only into the container.
    ``simulate``: no process (``plain``, the one simulator: the container is reported
    Running/Ready until deleted). Paths in ``env`` and ``content`` may name ``{placeholders}``
    the cluster defines (``{imagefs}``: localcluster/imagefs; plugins add their own).
    """

    pattern: str
    run: bool = False
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()   # the image's ENV
    content: tuple[tuple[str, str], ...] = ()
    # directories of the image the program writes to, given their own empty (writable) copy per
    # container start, as an image's writable layer is: pods share this machine's file system
    private: tuple[str, ...] = ()
    own_network: bool = False   # binds fixed loopback ports: a network namespace of its own (podnetns.py)
    # (port, protocol) the program serves that containers need not declare (relayed into an
    # own network, as declared ports are)
    ports: tuple[tuple[int, str], ...] = ()
    simulate: str | None = None

    def argv(self, container: dict) -> list[str]:
        """command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
        command, args = container.get("command"), container.get("args")
        if command:
            argv = list(command) + list(args or [])
        else:
            argv = list(self.entrypoint) + list(args if args else self.cmd)
        if not argv:
            raise PodSpecError(
                f"container {container['name']!r}: image {container.get('image')!r} has no "
                f"command or args and its image rule {self.pattern!r} sets no entrypoint or cmd"
            )
        return argv


def _port_protocol(text: str, source: str, image: str) -> tuple[int, str]:
    """"1053/UDP" -> (1053, "UDP"); the protocol defaults to TCP."""
    port, _, protocol = str(text).partition("/")
    protocol = (protocol or "TCP").upper()
    if not port.isdigit() or protocol not in ("TCP", "UDP"):
        raise ValueError(f"{source}: rule {image}: port {text!r} is not PORT or PORT/TCP or PORT/UDP")
    return int(port), protocol


@dataclass(frozen=True)
class ImageMap:
    rules: tuple[ImageRule, ...]
    source: str = "<inline>"
    paths: tuple[tuple[str, str], ...] = ()   # {placeholder} -> directory, for env and content

    def extended(self, rules: list[dict] | None = None, source: str = "", **paths: str) -> ImageMap:
        """This map with ``rules`` (in the file format) matched first and more placeholders:
        how a cluster plugin adds the images it can run."""
        added = ImageMap.parse(rules or [], source or self.source).rules
        return ImageMap(added + self.rules, self.source, self.paths + tuple(paths.items()))

    def _expand(self, value: str) -> str:
        for name, path in self.paths:
            value = value.replace("{" + name + "}", path)
        return value

    @classmethod
    def load(cls, path: Path) -> ImageMap:
        return cls.parse(yaml.safe_load(path.read_text()) or [], source=str(path))

    @classmethod
    def parse(cls, doc: list, source: str = "<inline>") -> ImageMap:
        rules = []
        for i, entry in enumerate(doc):
            if not isinstance(entry, dict) or "image" not in entry:
                raise ValueError(f"{source}: rule {i} needs an 'image' glob")
            if ("run" in entry) == ("simulate" in entry):
                raise ValueError(f"{source}: rule {i} ({entry['image']}) needs exactly one of 'run' or 'simulate'")
            run = entry.get("run")
            if (run or {}).get("network", "shared") not in ("shared", "own"):
                raise ValueError(f"{source}: rule {i} ({entry['image']}): network is 'shared' (default) or 'own'")
            rules.append(ImageRule(
                pattern=entry["image"],
                run="run" in entry,
                entrypoint=tuple((run or {}).get("entrypoint") or ()),
                cmd=tuple((run or {}).get("cmd") or ()),
                env=tuple(((run or {}).get("env") or {}).items()),
                content=tuple(((run or {}).get("content") or {}).items()),
                private=tuple((run or {}).get("private") or ()),
                own_network=(run or {}).get("network") == "own",
                ports=tuple(_port_protocol(p, source, entry["image"]) for p in (run or {}).get("ports") or ()),
                simulate=entry.get("simulate"),
            ))
        return cls(tuple(rules), source)

    def rule_for(self, image: str) -> ImageRule:
        """The first rule matching ``image``, its placeholders filled in."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(image, rule.pattern):
                return dataclasses.replace(
                    rule, env=tuple((k, self._expand(v)) for k, v in rule.env),
                    content=tuple((target, self._expand(source)) for target, source in rule.content))
        raise ImageNotMapped(
            f"image {image!r} is not mapped to a local command or a simulation in {self.source}; "
            f"add a rule for it"
        )


# ---------------------------------------------------------------------------------------
# Environment


def _field_ref(path: str, pod: dict) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if path in simple:
        return simple[path] or ""
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (meta.get(source) or {}).get(path[len(prefix) + 2:-2], "")
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(source) or {}).items()))
    raise PodSpecError(f"fieldRef {path!r} is not supported by the local kubelet")


def _key_ref(ref: dict, objects: dict, kind: str) -> str | None:
    obj = objects.get(ref["name"])
    if obj is None:
        if ref.get("optional"):
            return None
        raise PodSpecError(f"{kind} {ref['name']!r} not found")
    if ref["key"] not in obj:
        if ref.get("optional"):
            return None
        raise PodSpecError(f"key {ref['key']!r} not found in {kind} {ref['name']!r}")
    return obj[ref["key"]]


def container_env(
    container: dict, pod: dict, *, secrets: dict[str, dict[str, str]],
    config_maps: dict[str, dict[str, str]], base: dict[str, str],
) -> dict[str, str]:
    """The environment a container starts with, in the kubelet's precedence order:
    ``base`` (service variables), then ``envFrom``, then ``env`` (later wins).

    ``secrets``/``config_maps`` map names to already-decoded string data.
    """
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, objects, key in (("secret", secrets, "secretRef"), ("configMap", config_maps, "configMapRef")):
            if key in source:
                ref = source[key]
                data = objects.get(ref["name"])
                if data is None:
                    if not ref.get("optional"):
                        raise PodSpecError(f"{kind} {ref['name']!r} not found")
                    continue
                env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        if "valueFrom" not in var:
            env[var["name"]] = _expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            value = _field_ref(source["fieldRef"]["fieldPath"], pod)
        elif "secretKeyRef" in source:
            value = _key_ref(source["secretKeyRef"], secrets, "secret")
        elif "configMapKeyRef" in source:
            value = _key_ref(source["configMapKeyRef"], config_maps, "configMap")
        elif "resourceFieldRef" in source:
            value = _resource_field(container, source["resourceFieldRef"])
        else:
            raise PodSpecError(f"env {var['name']!r}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[var["name"]] = value
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion; ``$$`` escapes, unknown references stay verbatim."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2:end]
            out.append(env.get(name, value[i:end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def expand_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    return [_expand(a, env) for a in argv]


def _resource_field(container: dict, ref: dict) -> str:
    kind, _, resource = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    return str(value) if value is not None else "0"


# ---------------------------------------------------------------------------------------
# Volumes


def referenced_objects(pod: dict, env_only: bool = False) -> tuple[set[str], set[str]]:
    """Names of the secrets and configMaps a pod's containers' env (and, unless ``env_only``,
    its volumes) refer to."""
    secrets, cms = set(), set()
    spec = pod["spec"]
    for c in (spec.get("initContainers") or []) + spec["containers"]:
        for src in c.get("envFrom") or []:
            if "secretRef" in src:
                secrets.add(src["secretRef"]["name"])
            if "configMapRef" in src:
                cms.add(src["configMapRef"]["name"])
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"]["name"])
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"]["name"])
    if not env_only:
        for v in spec.get("volumes") or []:
            if "secret" in v:
                secrets.add(v["secret"]["secretName"])
            if "configMap" in v:
                cms.add(v["configMap"]["name"])
            for src in (v.get("projected") or {}).get("sources") or []:
                if "secret" in src:
                    secrets.add(src["secret"]["name"])
                if "configMap" in src:
                    cms.add(src["configMap"]["name"])
    return secrets, cms


@dataclass(frozen=True)
class Mount:
    source: str        # path on this machine
    target: str        # mountPath inside the container
    read_only: bool = False


@dataclass
class VolumePlan:
    """What the kubelet must write or resolve before a container can start."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)   # volume -> relpath -> bytes
    empty_dirs: list[str] = field(default_factory=list)
    host_paths: dict[str, str] = field(default_factory=dict)           # volume -> path
    claims: dict[str, str] = field(default_factory=dict)               # volume -> PVC name
    tokens: dict[str, list[dict]] = field(default_factory=dict)        # volume -> token sources


def _items(data: dict[str, bytes], items: list | None, what: str, optional: bool) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise PodSpecError(f"key {item['key']!r} not found in {what}")
        out[item["path"]] = data[item["key"]]
    return out


def plan_volumes(
    pod: dict, *, secrets: dict[str, dict[str, bytes]], config_maps: dict[str, dict[str, bytes]]
) -> VolumePlan:
    """Map each pod volume to files to write, a directory, or a claim to resolve.

    Missing non-optional secrets/configMaps raise :class:`PodSpecError`, which the kubelet
    treats like upstream's FailedMount: retried until they appear.
    """
    plan = VolumePlan()
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            plan.empty_dirs.append(name)
        elif "hostPath" in volume:
            plan.host_paths[name] = volume["hostPath"]["path"]
        elif "persistentVolumeClaim" in volume:
            plan.claims[name] = volume["persistentVolumeClaim"]["claimName"]
        elif "secret" in volume:
            src = volume["secret"]
            data = _lookup(secrets, src["secretName"], "secret", src.get("optional"))
            plan.files[name] = _items(data, src.get("items"), f"secret {src['secretName']!r}", src.get("optional"))
        elif "configMap" in volume:
            src = volume["configMap"]
            data = _lookup(config_maps, src["name"], "configMap", src.get("optional"))
            plan.files[name] = _items(data, src.get("items"), f"configMap {src['name']!r}", src.get("optional"))
        elif "downwardAPI" in volume:
            plan.files[name] = _downward(volume["downwardAPI"]["items"], pod)
        elif "projected" in volume:
            files: dict[str, bytes] = {}
            for source in volume["projected"]["sources"]:
                if "serviceAccountToken" in source:
                    plan.tokens.setdefault(name, []).append(source["serviceAccountToken"])
                elif "secret" in source:
                    src = source["secret"]
                    data = _lookup(secrets, src["name"], "secret", src.get("optional"))
                    files.update(_items(data, src.get("items"), f"secret {src['name']!r}", src.get("optional")))
                elif "configMap" in source:
                    src = source["configMap"]
                    data = _lookup(config_maps, src["name"], "configMap", src.get("optional"))
                    files.update(_items(data, src.get("items"), f"configMap {src['name']!r}", src.get("optional")))
                elif "downwardAPI" in source:
                    files.update(_downward(source["downwardAPI"]["items"], pod))
                else:
                    raise PodSpecError(f"volume {name!r}: unsupported projected source {sorted(source)}")
            plan.files[name] = files
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise PodSpecError(f"volume {name!r}: type {kinds} is not supported by the local kubelet")
    return plan


def _lookup(objects: dict, name: str, kind: str, optional: bool | None) -> dict:
    if name in objects:
        return objects[name]
    if optional:
        return {}
    raise PodSpecError(f"{kind} {name!r} not found")


def _downward(items: list[dict], pod: dict) -> dict[str, bytes]:
    out = {}
    for item in items:
        if "fieldRef" not in item:
            raise PodSpecError(f"downwardAPI item {item['path']!r}: only fieldRef is supported")
        out[item["path"]] = _field_ref(item["fieldRef"]["fieldPath"], pod).encode()
    return out


def container_mounts(container: dict, volume_dirs: dict[str, str]) -> list[Mount]:
    """Bind mounts for one container, honouring ``subPath`` and ``readOnly``."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volume_dirs:
            raise PodSpecError(f"container {container['name']!r} mounts unknown volume {vm['name']!r}")
        source = volume_dirs[vm["name"]]
        sub = vm.get("subPath")
        if sub:
            normalized = posixpath.normpath(sub)
            if normalized.startswith("..") or posixpath.isabs(normalized):
                raise PodSpecError(f"subPath {sub!r} must be a relative path inside the volume")
            source = posixpath.join(source, normalized)
        mounts.append(Mount(source, vm["mountPath"], bool(vm.get("readOnly"))))
    return mounts


# ---------------------------------------------------------------------------------------
# Pod IPs


class IPPool:
    """Unique pod IPs from ``network`` (a loopback /16), reusing released addresses."""

    def __init__(self, network: str):
        self._hosts = ipaddress.ip_network(network).hosts()
        self._free: list[str] = []
        self.in_use: set[str] = set()

    def allocate(self) -> str:
        ip = self._free.pop(0) if self._free else str(next(self._hosts))
        self.in_use.add(ip)
        return ip

    def release(self, ip: str) -> None:
        if ip in self.in_use:
            self.in_use.remove(ip)
            self._free.append(ip)


def readiness_target(container: dict) -> tuple[str, int | str, str | None] | None:
    """What makes a container Ready: ("tcp", port, None), ("http" or "https", port, path), or
    None (ready as soon as it runs). A readinessProbe wins; otherwise the first containerPort."""
    probe = container.get("readinessProbe") or {}
    if "httpGet" in probe:
        get = probe["httpGet"]
        return (get.get("scheme", "HTTP").lower(), get["port"], get.get("path", "/"))
    if "tcpSocket" in probe:
        return ("tcp", probe["tcpSocket"]["port"], None)
    ports = container.get("ports") or []
    if ports:
        return ("tcp", ports[0]["containerPort"], None)
    return None


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise PodSpecError(f"container {container['name']!r} has no port named {port!r}")


# ---------------------------------------------------------------------------------------
# DNS and the addresses a pod is told of

CLUSTER_DOMAIN = "cluster.local"


def resolv_conf(pod: dict, cluster_dns: str | None) -> str | None:
    """The /etc/resolv.conf the kubelet gives the pod's containers, from its dnsPolicy and
    dnsConfig (Kubernetes' pod DNS rules), or None for the node's own (``Default``, a host-network
    ``ClusterFirst``, or ``ClusterFirst`` when the kubelet has no cluster DNS, as a kubelet
    without ``clusterDNS`` falls back)."""
    spec = pod["spec"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    config = spec.get("dnsConfig") or {}
    namespace = pod["metadata"].get("namespace", "default")
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        if cluster_dns is None:
            return None
        nameservers = [cluster_dns]
        searches = [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
        options = {"ndots": "5"}
    elif policy == "None":
        nameservers, searches, options = [], [], {}
    else:
        return None
    nameservers += [n for n in config.get("nameservers") or [] if n not in nameservers]
    searches += [s for s in config.get("searches") or [] if s not in searches]
    for option in config.get("options") or []:
        options[option["name"]] = option.get("value")
    lines = [f"nameserver {n}" for n in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in options.items()))
    return "\n".join(lines) + "\n"


def nameservers(resolv: str | None) -> list[str]:
    return [line.split()[1] for line in (resolv or "").splitlines() if line.startswith("nameserver ") and len(line.split()) > 1]


def kubernetes_api_addresses(pod: dict) -> set[tuple[str, int]]:
    """The Kubernetes API addresses the pod's containers are given by literal environment values
    (``KUBERNETES_SERVICE_HOST``/``_PORT``: a vCluster's syncer points its tenants' pods at the
    virtual API this way, upstream pkg/controllers/resources/pods/translate/translator.go)."""
    found = set()
    for container in list(pod["spec"].get("initContainers") or []) + list(pod["spec"]["containers"]):
        env = {e["name"]: e.get("value") for e in container.get("env") or [] if "value" in e}
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if host and port and str(port).isdigit():
            found.add((host, int(port)))
    return found
