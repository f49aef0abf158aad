"""NotebookAccess.wait_synced without a cluster: a start waits for the virtual copy of a
credentials Secret and for the syncer's host copy of it, which outlives the pods."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client.rest import ApiException

from vcluster_spawner.credentials import REVISION, NotebookAccess
from vcluster_spawner.vcluster import VClusterError


class Secrets:
    """read_namespaced_secret over {(namespace, name): revision}; what ``changes`` holds lands
    on the n-th read (the syncer catching up)."""

    def __init__(self, revisions: dict, changes: dict | None = None):
        self.revisions, self.changes, self.reads = dict(revisions), dict(changes or {}), 0

    async def read_namespaced_secret(self, name, namespace):
        self.reads += 1
        self.revisions.update(self.changes.pop(self.reads, {}))
        if (namespace, name) not in self.revisions:
            raise ApiException(status=404)
        return SimpleNamespace(metadata=SimpleNamespace(annotations={REVISION: self.revisions[(namespace, name)]}))


HOST_COPY = ("vc-ann", "s3-credentials-x-default-x-vc-ann")


def wait(virtual: Secrets, host: Secrets, timeout: float = 2) -> None:
    access = NotebookAccess(host, "vc-ann", "vc-ann")
    asyncio.run(access.wait_synced(virtual, "s3-credentials", "default", "r2", timeout))


def test_a_start_waits_for_the_syncers_stale_host_copy_to_be_updated():
    virtual = Secrets({("default", "s3-credentials"): "r2"})
    host = Secrets({HOST_COPY: "r1"}, changes={4: {HOST_COPY: "r2"}})
    wait(virtual, host)
    assert host.reads >= 4 and host.revisions[HOST_COPY] == "r2"


def test_no_host_copy_yet_is_fine_the_first_pod_makes_it():
    wait(Secrets({("default", "s3-credentials"): "r2"}), Secrets({}))


def test_a_host_copy_that_stays_stale_times_out_with_the_secrets_name():
    with pytest.raises(VClusterError, match="did not receive Secret default/s3-credentials"):
        wait(Secrets({("default", "s3-credentials"): "r2"}), Secrets({HOST_COPY: "r1"}), timeout=0.3)


@pytest.mark.parametrize("virtual", [{}, {("default", "s3-credentials"): "r1"}], ids=["missing", "stale"])
def test_the_virtual_copy_must_exist_and_carry_the_revision(virtual):
    with pytest.raises(VClusterError, match="did not receive"):
        wait(Secrets(virtual), Secrets({}), timeout=0.3)
