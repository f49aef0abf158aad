"""Unit tests of the async helpers of vcluster_spawner.vcluster (no cluster)."""

import asyncio

import pytest

from vcluster_spawner.vcluster import VClusterError, concurrently, control_plane_failure, control_plane_waiting, poll_until


async def test_concurrently_returns_results_in_order():
    async def after(seconds, value):
        await asyncio.sleep(seconds)
        return value
    assert await concurrently(after(0.05, "slow"), after(0, "fast")) == ["slow", "fast"]


async def test_concurrently_raises_the_first_failure_as_is_and_cancels_the_rest():
    cancelled = asyncio.Event()

    async def waits_for_ever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails():
        await asyncio.sleep(0.01)
        raise VClusterError("the home volume could not be provisioned")
    with pytest.raises(VClusterError, match="^the home volume could not be provisioned$"):
        await asyncio.wait_for(concurrently(waits_for_ever(), fails()), 5)
    assert cancelled.is_set()


async def test_poll_until_names_the_last_error_in_its_timeout_message():
    async def refused():
        raise VClusterError("its pod cannot be scheduled: 0/1 nodes are available")
    with pytest.raises(VClusterError, match=r"not ready within 0 s \(last error: its pod cannot be scheduled"):
        await poll_until(refused, 0.1, "not ready")


def unschedulable(message: str) -> dict:
    return {"metadata": {"name": "vc-0"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}}


def test_an_unschedulable_control_plane_fails_unless_it_waits_for_its_claim():
    assert control_plane_failure(unschedulable("0/1 nodes are available: 1 Insufficient cpu.")) == (
        "its pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu.")
    # a re-created vCluster's claim, created by the StatefulSet controller a moment before the
    # pod, not yet in the scheduler's cache: the scheduler retries once it sees the claim
    for waiting in ('0/1 nodes are available: persistentvolumeclaim "data-vc-dora-0" not found.',
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                    'persistentvolumeclaim "data-vc-0" is being deleted'):
        assert control_plane_failure(unschedulable(waiting)) is None, waiting


def test_a_control_plane_that_does_not_fail_says_what_it_waits_for():
    assert control_plane_waiting(unschedulable('persistentvolumeclaim "data-vc-0" is being deleted')) == (
        'its pod is not scheduled: persistentvolumeclaim "data-vc-0" is being deleted')
    pulling = {"metadata": {"name": "vc-0"}, "status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "vcluster-copy", "state": {"waiting": {"reason": "PodInitializing"}}}]}}
    assert control_plane_waiting(pulling) == "its container waits: PodInitializing"
    assert control_plane_waiting({"metadata": {"name": "vc-0"}, "status": {"phase": "Running"}}) == ""
    assert control_plane_waiting(None) == ""


def test_a_wake_restores_at_most_the_high_availability_size_whatever_the_annotation_says():
    from vcluster_spawner.vcluster import MAX_WAKE_REPLICAS, wake_replicas
    assert wake_replicas(None) == wake_replicas("") == wake_replicas("1") == 1
    assert wake_replicas("3") == 3 == MAX_WAKE_REPLICAS
    # forged by whoever could write the StatefulSet (a compromised control plane, absent the
    # chart's admission policy): never a flood of control planes, never an error
    assert wake_replicas("500") == MAX_WAKE_REPLICAS
    assert wake_replicas("-2") == wake_replicas("0") == wake_replicas("lots") == 1
