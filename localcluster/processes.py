"""Child processes that never outlive the process that started them.

Every child gets ``PR_SET_PDEATHSIG``: if the supervisor dies for any reason (Ctrl-C,
SIGKILL, a crashed test run) the kernel kills its children too, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """``preexec_fn`` for children: the kernel sends ``sig`` when the parent thread exits."""
    _libc.prctl(_PR_SET_PDEATHSIG, sig)


class ManagedProcess:
    """An asyncio child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=die_with_parent,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), grace)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


class ProcessGroup:
    """Processes started together and stopped in reverse order (clients before servers)."""

    def __init__(self):
        self.processes: list[ManagedProcess] = []

    async def spawn(self, name: str, argv: list[str], log_path: Path) -> ManagedProcess:
        proc = await ManagedProcess(name, argv, log_path).start()
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.processes:
            proc.check_alive()

    async def stop(self, grace: float = 10.0) -> None:
        for proc in reversed(self.processes):
            await proc.stop(grace)
        self.processes.clear()


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str, alive=()):
    """Poll an async ``predicate`` until truthy; fail early if a process in ``alive`` died.
    An error of the predicate counts as "not yet" (connection refused, a 500 during start-up),
    except an ``AssertionError``, which is raised at once; the last error is in the timeout's
    message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error = None
    while True:
        for proc in alive:
            proc.check_alive()
        try:
            result = await predicate()
        except AssertionError:
            raise
        except Exception as e:
            result, last_error = None, e
        if result:
            return result
        if loop.time() > deadline:
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


async def holds(predicate, *, seconds: float, interval: float = 0.1, what: str) -> None:
    """Check an async ``predicate`` throughout ``seconds`` (a negative assertion: something
    does not happen); fails the moment it stops holding."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        assert await predicate(), f"no longer true: {what}"
        await asyncio.sleep(interval)
