"""Benchmark sizes, from the environment so that ``make bench`` and the smoke test share code."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.replace(" ", "").split(",") if x)


@dataclass(frozen=True)
class Settings:
    runs: int = 10                                  # measured spawns per kind (warm, wake, cold, KubeSpawner)
    concurrency: tuple[int, ...] = (1, 5, 10, 20)   # users starting at once, one level after the other
    startup_delay: float = 1.0                      # VCLUSTER_EMULATION_STARTUP_DELAY of the cluster we start
    # Seconds to wait after a concurrency level before counting the hub's connections: idle
    # keep-alive connections of the client pool close after 15 s (aiohttp's default), so what
    # is left is what the hub holds open (watches, per-user virtual API clients).
    settle: float = 16.0
    spawn_timeout: float = 600.0
    out: Path = field(default=RESULTS)

    @classmethod
    def from_env(cls, env=os.environ) -> "Settings":
        d = cls()
        return cls(
            runs=int(env.get("BENCH_RUNS", d.runs)),
            concurrency=_ints(env.get("BENCH_CONCURRENCY", ",".join(map(str, d.concurrency)))),
            startup_delay=float(env.get("BENCH_STARTUP_DELAY", d.startup_delay)),
            settle=float(env.get("BENCH_SETTLE", d.settle)),
            spawn_timeout=float(env.get("BENCH_SPAWN_TIMEOUT", d.spawn_timeout)),
            out=Path(env.get("BENCH_OUT", d.out)),
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out), "concurrency": list(self.concurrency)}
