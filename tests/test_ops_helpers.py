"""Unit tests of the async helpers of vcluster_spawner.vcluster (no cluster)."""

import asyncio

import pytest

from vcluster_spawner.vcluster import VClusterError, concurrently, poll_until


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
