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
    first_start_runs: int = 10                      # measured spawns of pool, wake-ahead and interleaved warm
    concurrency: tuple[int, ...] = (1, 5, 10, 20)   # users starting at once, one level after the other
    # Seconds to let a concurrency level settle after its spawns, then as long again to count the
    # hub's steady requests (watch re-opens) and its connections, most idle keep-alive
    # connections of the client pool being closed by then (aiohttp closes them after 15 s).
    settle: float = 12.0
    spawn_timeout: float = 540.0
    out: Path = field(default=RESULTS)

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        d = cls()
        return cls(
            runs=int(env.get("BENCH_RUNS", d.runs)),
            first_start_runs=int(env.get("BENCH_FIRST_START_RUNS", env.get("BENCH_RUNS", d.first_start_runs))),
            concurrency=_ints(env.get("BENCH_CONCURRENCY", ",".join(map(str, d.concurrency)))),
            settle=float(env.get("BENCH_SETTLE", d.settle)),
            spawn_timeout=float(env.get("BENCH_SPAWN_TIMEOUT", d.spawn_timeout)),
            out=Path(env.get("BENCH_OUT", d.out)),
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out), "concurrency": list(self.concurrency)}
