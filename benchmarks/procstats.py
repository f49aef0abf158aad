"""The hub process as the kernel sees it (/proc): CPU time, peak RSS, open TCP connections."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    own: float        # seconds in the hub process itself (user + system)
    children: float   # seconds in its children that have exited (helm runs)


class ProcessStats:
    def __init__(self, pid: int):
        self.pid = pid
        self.proc = Path(f"/proc/{pid}")

    def cpu(self) -> Cpu:
        # fields after the command name: utime stime cutime cstime are 14-17 (1-based)
        fields = (self.proc / "stat").read_text().rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        return Cpu((utime + stime) / TICKS, (cutime + cstime) / TICKS)

    def reset_peak_rss(self) -> None:
        """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each measurement gets its
        own peak instead of the process's lifetime peak."""
        try:
            (self.proc / "clear_refs").write_text("5")
        except OSError:
            pass   # not permitted: the peak is then the lifetime peak, still an upper bound

    def _status(self, key: str) -> int:
        for line in (self.proc / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def rss(self) -> int:
        return self._status("VmRSS")

    def tcp_connections(self, host_api_port: int) -> dict[str, int]:
        """Established TCP connections of this process (not its children): to the host API
        server's port, and to anything else (the vClusters' APIs, the proxy, notebooks)."""
        inodes = set()
        for fd in (self.proc / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts = {"host_api": 0, "other": 0}
        for table in ("tcp", "tcp6"):
            try:
                lines = (self.proc / "net" / table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                remote, state, inode = parts[2], parts[3], parts[9]
                if inode in inodes and state == "01":   # ESTABLISHED
                    port = int(remote.rsplit(":", 1)[1], 16)
                    counts["host_api" if port == host_api_port else "other"] += 1
        return counts
