"""Smoke run of the benchmark code with tiny sizes, through the entry point ``make bench`` uses
(``python -m benchmarks run``), so it cannot rot. Benchmarks are not tests: no timing is
asserted here, only that every measurement is taken and the report is written."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks.apimetrics import VERBS

pytestmark = pytest.mark.hub


async def test_benchmark_measures_everything_and_writes_the_report(cluster, tmp_path):
    out = tmp_path / "results"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks", "run", cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LOCALCLUSTER_REUSE": str(cluster.state_dir), "BENCH_RUNS": "1", "BENCH_CONCURRENCY": "2",
             "BENCH_FIRST_START_RUNS": "0",   # the pool and wake-ahead: tests/test_hub_pool.py, on the real vCluster
             "BENCH_SETTLE": "1", "BENCH_SPAWN_TIMEOUT": "300", "BENCH_OUT": str(out),
             "BENCH_WORKDIR": str(tmp_path / "work")})
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()[-4000:]
    results = json.loads((out / "latest.json").read_text())

    assert set(results["spawn"]) == {"cold", "wake", "warm", "kubespawner"}
    for kind, scenario in results["spawn"].items():
        assert [s["error"] for s in scenario["spawns"]] == [""], kind
        spawn = scenario["spawns"][0]
        assert spawn["total"] > 0
        assert sum(spawn["phases"].values()) == pytest.approx(spawn["total"], abs=0.05), (kind, spawn)
        assert set(spawn["api"]["hub"]) == set(VERBS)
        assert scenario["stops"][0]["ok"] and scenario["stops"][0]["hub_seconds"] is not None, kind
        assert scenario["summary"]["total"]["median"] == spawn["total"]
    # the hub's identity is what the API server counted: a cold start installs with helm
    assert results["spawn"]["cold"]["spawns"][0]["api"]["hub_writes"] > 0
    # helm under an identity of its own: its requests and the spawner's are counted apart
    cold = results["spawn"]["cold"]["spawns"][0]["api"]
    assert cold["helm"]["create"] > 0 and cold["spawner"]["create"] > 0
    assert all(cold["hub"][v] == cold["helm"][v] + cold["spawner"][v] for v in VERBS)
    assert results["spawn"]["cold"]["spawns"][0]["control_plane"] > 0          # the control plane was waited for
    assert results["spawn"]["warm"]["spawns"][0]["control_plane"] == 0         # ... and not when it ran already
    assert results["spawn"]["wake"]["spawns"][0]["own_overhead"] >= 0
    (level,) = results["concurrency"]
    assert level["users"] == 2 and level["success_rate"] == 1
    assert level["hub_cpu_seconds"] > 0 and level["hub_peak_rss_bytes"] > 0
    assert level["hub_connections_after_settle"]["host_api"] >= 1
    assert level["hub_steady_per_minute"]["watch"] is not None
    assert results["machine"]["cores"] and results["machine"]["load"]["samples"] >= 1
    assert {g["goal"] for g in results["goals"]} >= {"warm spawn <= 1.2x KubeSpawner",
                                                      "<= 20 host API write requests per spawn"}

    text = (out / "report.md").read_text()
    for section in ("## Machine", "## Goals", "## Spawn latency", "## Concurrency", "## Hub-side cost"):
        assert section in text
