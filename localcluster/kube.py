"""Small kubernetes_asyncio helpers shared by the local kubelet, provisioner and tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

log = logging.getLogger(__name__)


def write_kubeconfig(
    path: Path, *, server: str, ca_path: Path, user: str, cert_path: Path, key_path: Path
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_path)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert_path), "client-key": str(key_path)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


async def api_client(kubeconfig: Path | str) -> client.ApiClient:
    """An ApiClient for one kubeconfig, without touching kubernetes_asyncio's global default."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


async def watch_forever(
    list_func: Callable, handler: Callable[[str, object], Awaitable[None]], *, what: str, **kwargs
) -> None:
    """List+watch ``list_func`` for ever, calling ``handler(event_type, obj)``.

    Every (re)list replays all current objects as ``SYNC`` events so handlers are level-triggered
    and recover from missed events; an expired resourceVersion (410) triggers a relist.
    """
    while True:
        try:
            listing = await list_func(**kwargs)
            for item in listing.items:
                await handler("SYNC", item)
            resource_version = listing.metadata.resource_version
            async with watch.Watch().stream(
                list_func, resource_version=resource_version, timeout_seconds=300, **kwargs
            ) as stream:
                async for event in stream:
                    if event["type"] == "ERROR":
                        break
                    await handler(event["type"], event["object"])
        except asyncio.CancelledError:
            raise
        except ApiException as e:
            if e.status != 410:
                log.warning("watch on %s failed (%s); retrying", what, e.reason)
                await asyncio.sleep(1)
        except Exception:
            log.exception("watch on %s failed; retrying", what)
            await asyncio.sleep(1)
