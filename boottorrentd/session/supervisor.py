"""Supervised children (dnsmasq, transmission-daemon, the tracker).

Each child runs in the foreground; its output goes to the journal under its own
identifier (boottorrentd-<name>, field BOOTTORRENT_CHILD=<name>). A child that exits is
restarted with exponential backoff: the first retry comes within a second, the delay
doubles up to a cap, and resets once the child has run healthily for a minute.
"""

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from boottorrentd.util.fs import read_state, write_atomic

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0
STOP_GRACE_S = 5.0
READY_TIMEOUT_S = 30.0

_PR_SET_PDEATHSIG = 1


def _parse_pids(raw: bytes) -> dict[str, tuple[int, list[str]]]:
    """children.json: {name: {"pid": int, "argv": [str, ...]}}."""
    recorded = json.loads(raw.decode("utf-8"))
    if not isinstance(recorded, dict):
        raise TypeError("it is not an object")
    children = {}
    for name, entry in recorded.items():
        pid, argv = entry["pid"], entry["argv"]
        if (not isinstance(pid, int) or pid <= 1 or not isinstance(argv, list)
                or not all(isinstance(a, str) for a in argv)):
            raise TypeError(f"child {name!r}: pid or argv is not what it should be")
        children[name] = (pid, argv)
    return children


class ChildState(StrEnum):
    STARTING = "starting"  # spawned, not ready yet
    RUNNING = "running"
    BACKOFF = "backoff"  # exited; waiting before the next restart
    STOPPED = "stopped"


@dataclass
class ChildSpec:
    """How to run one child. `ready` is awaited after every (re)start and raises when the
    child does not become usable; `started` then runs once it is (e.g. re-add torrents)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready: Callable[[], Awaitable[None]] | None = None
    started: Callable[[], Awaitable[None]] | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0
    state: ChildState = ChildState.STARTING
    last_exit: str = ""
    task: asyncio.Task | None = field(default=None, repr=False)
    pump: asyncio.Task | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process and self.process.returncode is None else 0

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.pid else 0.0


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Send `sig` to the process group `proc` leads (start_new_session: its PID)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _die_with_parent() -> None:
    # Outside systemd nothing kills the children if the daemon is killed with SIGKILL;
    # the pidfile sweep at the next start catches the ones that dropped privileges
    # (a credential change clears this flag).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, pidfile: Path, on_change: Callable[[], None]) -> None:
        self.pidfile = pidfile
        self.on_change = on_change
        self.children: dict[str, Child] = {}
        self._stopping = False

    @property
    def degraded(self) -> bool:
        return any(c.state != ChildState.RUNNING for c in self.children.values())

    def kill_leftovers(self) -> None:
        """Kill children a previous, killed daemon left behind (by recorded PID)."""
        recorded = read_state(self.pidfile, _parse_pids) or {}
        for name, (pid, argv) in recorded.items():
            try:
                program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except (FileNotFoundError, ProcessLookupError):
                continue
            # A recycled PID belongs to someone else: only kill our own program. It is in
            # our argv, first or after a wrapper such as setpriv that exec'd it.
            if program in argv:
                log.warning("killing %s (pid %d) left by a previous boottorrentd", name, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def _record_pids(self) -> None:
        data = {n: {"pid": c.pid, "argv": c.spec.argv}
                for n, c in self.children.items() if c.pid}
        write_atomic(self.pidfile, json.dumps(data))

    async def start(self, spec: ChildSpec) -> Child:
        """Start a child and wait until it is ready; raise if it is not."""
        child = Child(spec)
        self.children[spec.name] = child
        await self._spawn(child)
        child.task = asyncio.create_task(self._watch(child), name=f"supervise-{spec.name}")
        return child

    async def _spawn(self, child: Child) -> None:
        spec = child.spec
        child.state = ChildState.STARTING
        child.process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            # A group of its own: what the child starts (a helper, a shell's command) is
            # signalled with it at a stop, instead of outliving the session and holding
            # its output pipe open.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        self._record_pids()
        child.pump = asyncio.create_task(self._pump(child.spec.name, child.process.stdout))
        log.info("started %s (pid %d): %s", spec.name, child.process.pid, " ".join(spec.argv),
                 extra={"BOOTTORRENT_CHILD": spec.name})
        try:
            if spec.ready:
                await asyncio.wait_for(spec.ready(), READY_TIMEOUT_S)
            if spec.started:
                await spec.started()
        except Exception as e:
            if child.process.returncode is None:
                _signal_group(child.process, signal.SIGKILL)
                await child.process.wait()
            if child.pump is not None:
                await asyncio.wait([child.pump], timeout=1)
            raise RuntimeError(f"{spec.name} did not become ready: {e or type(e).__name__}") from e
        child.state = ChildState.RUNNING
        self.on_change()

    async def _pump(self, name: str, stream: asyncio.StreamReader | None) -> None:
        child_log = logging.getLogger(f"boottorrentd.{name}")
        fields = {"SYSLOG_IDENTIFIER": f"boottorrentd-{name}", "BOOTTORRENT_CHILD": name}
        assert stream is not None
        while line := await stream.readline():
            child_log.info("%s", line.decode(errors="replace").rstrip(), extra=fields)

    async def _watch(self, child: Child) -> None:
        delay = FIRST_DELAY_S
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            ran_for = time.monotonic() - child.started_at
            child.last_exit = f"exit code {code}" if code >= 0 else f"signal {-code}"
            if ran_for >= HEALTHY_AFTER_S:
                delay = FIRST_DELAY_S
            child.state = ChildState.BACKOFF
            self.on_change()
            log.warning("%s exited (%s) after %.0f s; restarting in %.1f s", child.spec.name,
                        child.last_exit, ran_for, delay,
                        extra={"BOOTTORRENT_CHILD": child.spec.name})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
            child.restarts += 1
            try:
                await self._spawn(child)
            except Exception as e:
                log.error("%s", e, extra={"BOOTTORRENT_CHILD": child.spec.name})

    def send_signal(self, name: str, sig: int) -> None:
        child = self.children.get(name)
        if child and child.process and child.pid:
            child.process.send_signal(sig)

    async def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after a grace period."""
        self._stopping = True
        for child in self.children.values():
            if child.task:
                child.task.cancel()
        for child in reversed(list(self.children.values())):
            proc = child.process
            if proc is None or proc.returncode is not None:
                continue
            _signal_group(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                log.warning("%s ignored SIGTERM; killing it", child.spec.name)
                _signal_group(proc, signal.SIGKILL)
                await proc.wait()
            # Whatever of its group outlived it (a helper that ignores SIGTERM) goes too.
            _signal_group(proc, signal.SIGKILL)
            child.state = ChildState.STOPPED
        # Let the output pumps drain so the pipes close with the loop still running.
        pumps = [c.pump for c in self.children.values() if c.pump]
        if pumps:
            await asyncio.wait(pumps, timeout=1)
        self.children.clear()
        self.pidfile.unlink(missing_ok=True)
        self._stopping = False
