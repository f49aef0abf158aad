"""Shared helpers for tests against the local cluster."""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio.client.rest import ApiException

from localcluster.processes import wait_for


def python_pod(name: str, code_or_args, *, restart="Never", volumes=(), mounts=(), ports=(), image="python:3.11"):
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return {
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": image, "command": ["python3"], "args": args,
                "volumeMounts": list(mounts), "ports": [{"containerPort": p} for p in ports],
            }],
            "volumes": list(volumes),
        },
    }


async def pod_phase(core, ns, name, *phases, timeout=60):
    async def check():
        pod = await core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase in phases else None
    return await wait_for(check, timeout=timeout, what=f"pod {ns}/{name} in {phases}")


async def pod_ready(core, ns, name, timeout=60):
    async def check():
        pod = await core.read_namespaced_pod(name, ns)
        ready = [c for c in pod.status.conditions or [] if c.type == "Ready" and c.status == "True"]
        return pod if ready else None
    return await wait_for(check, timeout=timeout, what=f"pod {ns}/{name} Ready")


async def gone(read, *args, timeout=60, what):
    async def check():
        try:
            await read(*args)
            return False
        except ApiException as e:
            return e.status == 404
    await wait_for(check, timeout=timeout, what=what)


def processes_matching(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


async def attack_outcomes(attacks: dict) -> dict:
    """name -> the API server's status for each attack (an awaitable request), "ALLOWED" when
    it went through; the caller asserts every one was refused."""
    outcomes = {}
    for name, attack in attacks.items():
        try:
            await attack
            outcomes[name] = "ALLOWED"
        except ApiException as e:
            outcomes[name] = e.status
    return outcomes
