"""Prometheus metrics of vCluster operations, served on the hub's own ``/hub/metrics``.

JupyterHub exposes prometheus_client's default registry, so the metrics are registered there
and appear next to the hub's own. They are collected in the process that runs the operations
(the hub; the lifecycle service's operations are logged, not counted here).

- ``vcluster_spawner_operation_duration_seconds{operation}``: successful provision and wake
  (from the operation until the vCluster is ready), sleep and delete; its ``_count`` is the
  number of successes.
- ``vcluster_spawner_operations_total{operation,result}``: attempts, result success/failure.
- ``vcluster_spawner_vclusters{state}``: vClusters last seen by this hub in each state
  (running, starting, asleep, error); absent ones are not counted.
- ``vcluster_spawner_warm_pool_starts_total{result,reason}``: dynamic-mode starts that found no
  vCluster: claimed from the warm pool, resumed, or missed (and why).
- ``vcluster_spawner_wake_ahead_total{outcome}``: wakes ahead of a start and what became of them.

The pool's own gauges (members, ready, age) come from the lifecycle service, which keeps the
pool, on the status page's ``/metrics`` (services/status.py).
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .vcluster import Ref, State, Status, Superseded, VClusterOps

STATES = ("running", "starting", "asleep", "error")

DURATION = Histogram(
    "vcluster_spawner_operation_duration_seconds",
    "Duration of successful vCluster operations (provision and wake: until ready), in seconds",
    ["operation"], buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf")))
ATTEMPTS = Counter(
    "vcluster_spawner_operations_total", "vCluster operations by result (success, failure)",
    ["operation", "result"])

POOL_STARTS = Counter(
    "vcluster_spawner_warm_pool_starts_total",
    "Dynamic-mode starts without a vCluster, by result: claimed (a warm pool member), resumed (a member "
    "claimed for the user before), miss (created cold; reason: empty pool, or a setting a member cannot have)",
    ["result", "reason"])
WAKE_AHEAD = Counter(
    "vcluster_spawner_wake_ahead_total",
    "vCluster wakes ahead of a start (spawn page opened), by outcome: woken, used (a start followed), "
    "slept (put back to sleep after wake_ahead_timeout)",
    ["outcome"])


def pool_start(result: str, reason: str = "") -> None:
    POOL_STARTS.labels(result, reason).inc()


def wake_ahead(outcome: str) -> None:
    WAKE_AHEAD.labels(outcome).inc()


# Ref -> last known state name; module level because a spawner builds a new ops object per use
_states: dict[Ref, str] = {}
# Ref -> (operation, monotonic start) for provision/wake, completed by wait_ready
_pending: dict[Ref, tuple[str, float]] = {}


class _StateCollector:
    def collect(self):
        family = GaugeMetricFamily("vcluster_spawner_vclusters",
                                   "vClusters last seen by this hub, by state", labels=["state"])
        for state in STATES:
            family.add_metric([state], sum(1 for s in _states.values() if s == state))
        yield family


REGISTRY.register(_StateCollector())


def _record(ref: Ref, operation: str, started: float, ok: bool) -> None:
    ATTEMPTS.labels(operation, "success" if ok else "failure").inc()
    if ok:
        DURATION.labels(operation).observe(time.monotonic() - started)
    else:
        _states[ref] = "error"


async def _failures_recorded(ref: Ref, operation: str, call) -> tuple[float, object]:
    """Awaits ``call``; a failure is recorded (and re-raised). Returns the start time and the
    call's result."""
    started = time.monotonic()
    try:
        result = await call
    except Superseded:   # nothing was done: neither a success nor a failure
        raise
    except BaseException:
        _record(ref, operation, started, ok=False)
        raise
    return started, result


class MeteredOps(VClusterOps):
    """``VClusterOps`` that counts and times its operations and remembers states."""

    async def status(self, ref: Ref) -> Status:
        status = await super().status(ref)
        if status.state == State.ABSENT:
            _states.pop(ref, None)
        elif _states.get(ref) != "error" or status.state != State.STARTING:
            # a failed start stays "error" until the vCluster runs, sleeps or goes
            _states[ref] = status.state.value
        return status

    async def install(self, ref, chart, values, report=lambda message: None) -> Status:
        return await self._begin(ref, "provision", super().install(ref, chart, values, report))

    async def wake(self, ref: Ref, *, ahead: bool = False) -> Status:
        return await self._begin(ref, "wake", super().wake(ref, ahead=ahead))

    async def _begin(self, ref: Ref, operation: str, call):
        started, result = await _failures_recorded(ref, operation, call)
        _pending[ref] = (operation, started)   # completed (timed) when the vCluster is ready
        return result

    async def wait_ready(self, ref, virtual, timeout, report) -> None:
        operation, started = _pending.pop(ref, (None, 0.0))
        try:
            await super().wait_ready(ref, virtual, timeout, report)
        except BaseException:
            if operation:
                _record(ref, operation, started, ok=False)
            raise
        _states[ref] = State.RUNNING.value
        if operation:
            _record(ref, operation, started, ok=True)

    async def sleep(self, ref: Ref, timeout: float = 180, *, decided_on: Status | None = None) -> None:
        await self._timed(ref, "sleep", super().sleep(ref, timeout, decided_on=decided_on),
                          State.ASLEEP.value)

    async def delete(self, ref: Ref, *, decided_on: Status | None = None) -> None:
        await self._timed(ref, "delete", super().delete(ref, decided_on=decided_on), None)

    async def _timed(self, ref: Ref, operation: str, call, state_after: str | None) -> None:
        started, _ = await _failures_recorded(ref, operation, call)
        _record(ref, operation, started, ok=True)
        if state_after:
            _states[ref] = state_after
        else:
            _states.pop(ref, None)
