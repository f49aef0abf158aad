"""Medians and percentiles of small samples (10-20 runs): linear interpolation between order
statistics, like numpy's default, so p95 of ten runs lies between the two slowest."""

from __future__ import annotations

from .apimetrics import VERBS


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (pos - lo), 3)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": percentile(values, 50), "p95": percentile(values, 95),
            "min": round(min(values), 3) if values else None, "max": round(max(values), 3) if values else None}


def median_phases(spawns: list[dict]) -> dict[str, float]:
    if not spawns:
        return {}
    return {name: percentile([s["phases"][name] for s in spawns], 50) for name in spawns[0]["phases"]}


def median_api(deltas: list[dict]) -> dict:
    """Median per verb of the hub's requests (and of its writes) over several spawns or stops."""
    if not deltas:
        return {}
    return {**{who: {v: percentile([d[who][v] for d in deltas], 50) for v in VERBS} for who in ("hub", "helm", "spawner")},
            "hub_writes": percentile([d["hub_writes"] for d in deltas], 50)}


def per_item(delta: dict, n: int) -> dict:
    """The hub's requests during a concurrent burst, divided by the number of spawns/stops."""
    if not n:
        return {}
    return {**{who: {v: round(c / n, 2) for v, c in delta[who].items()} for who in ("hub", "helm", "spawner")},
            "hub_writes": round(delta["hub_writes"] / n, 2),
            "all_clients": {v: round(c / n, 2) for v, c in delta["all_clients"].items()}}
