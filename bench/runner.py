"""What every mode shares: the clients' folders, waiting for them, counting, checking.

A mode (bench/modes.py) starts one program per client at the same moment; the runner
waits until each is done or failed, then makes a RunResult of the timings and the bytes
the links carried.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.daemon import OS_NAME, PAYLOAD, Session
from bench.network import Machine, ShapedLan, iface_counters
from bench.proc import clean_env, kill_group, launch, say
from bench.sampler import Sample, Sampler
from bench.units import human_rate
from bench.webseed import with_url_list
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.agent import client_runner

FILESERVER = Path(__file__).resolve().parent / "fileserver.py"
FILES_PORT = 8081
POLL_S = 0.1

# When client i is done (seconds since the epoch) or None; why client i failed or None.
Done = Callable[[int], float | None]
Failed = Callable[[int], str | None]


@dataclass
class RunResult:
    mode: str
    clients: int
    repeat: int
    completion_s: list[float | None]
    t_all_s: float | None
    t_first_s: float | None
    t_median_s: float | None
    server_upload_bytes: int
    clients_received_bytes: int
    p2p_share: float
    seed_first_data_s: float | None
    seed_payload_bytes: int | None = None
    # Share of the host's CPU time that was busy during the run: near 1, the machine
    # (every client, the seed and the shaped network on its cores) limits the figures.
    host_cpu_busy: float | None = None
    failures: list[str] = field(default_factory=list)
    timeline: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class RunSettings:
    """The command line's choices that every run follows."""

    size: int
    settle: float
    verify: bool = True
    same_session: bool = False
    aria2_extra: str = ""
    web_seed: bool = False
    lt_slots: int = 8


class Progress:
    """Which clients are done (when) and which failed (why), reported every 5 s."""

    def __init__(self, label: str, n: int, done: Done, failed: Failed,
                 sampler: Sampler) -> None:
        self.label, self.n, self.done, self.failed, self.sampler = label, n, done, failed, sampler
        self.finish: list[float | None] = [None] * n
        self.failed_why: dict[int, str] = {}
        self.last_print = 0.0

    def _pending(self) -> list[int]:
        return [i for i in range(self.n)
                if self.finish[i] is None and i not in self.failed_why]

    def poll(self) -> bool:
        """Look at every client still running; True once none is."""
        for i in self._pending():
            self.finish[i] = self.done(i)
            if self.finish[i] is None and (why := self.failed(i)):
                self.failed_why[i] = why
        settled = not self._pending()
        now = time.monotonic()
        if now - self.last_print >= 5 or settled:
            self.last_print = now
            done_count = sum(f is not None for f in self.finish)
            say(f"  {self.label}: {done_count}/{self.n} done, "
                f"{time.time() - self.sampler.t0:.1f} s, server up "
                f"{human_rate(self.sampler.server_rate())}"
                + (f", {len(self.failed_why)} failed" if self.failed_why else ""))
        return settled

    def give_up(self, why: str) -> None:
        for i in self._pending():
            self.failed_why[i] = why

    def outcome(self) -> tuple[list[float | None], list[str]]:
        """(completion times in seconds since the start, failures)."""
        t0 = self.sampler.t0
        failures = [f"c{i}: {why}" for i, why in sorted(self.failed_why.items())]
        return [None if f is None else round(f - t0, 3) for f in self.finish], failures


class Runner:
    def __init__(self, settings: RunSettings, lab: ShapedLan, session: Session,
                 work: Path) -> None:
        self.settings = settings
        self.lab = lab
        self.session = session
        self.work = work
        self.data = work / "data"
        self.script = client_runner(work)
        self.served = work / "served"
        self.served.mkdir()
        self.fileserver: subprocess.Popen | None = None
        self.torrent_url = ""
        self.boot_waves = 0
        self._start_fileserver()
        if settings.web_seed:
            self.torrent_url = self._web_seed_torrent()

    @property
    def server(self) -> Machine:
        assert self.lab.server is not None
        return self.lab.server

    # -- the bench file server (unicast's source, the web seed's torrent) --------------------

    def _start_fileserver(self) -> None:
        self.fileserver = subprocess.Popen(
            ["ip", "netns", "exec", self.server.ns.name, sys.executable, str(FILESERVER),
             self.session.host, str(FILES_PORT), f"files={self.session.library}",
             f"bench={self.served}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            start_new_session=True)
        line = self.fileserver.stdout.readline() if self.fileserver.stdout else ""
        if line.strip() != "listening":
            err = self.fileserver.stderr.read() if self.fileserver.stderr else ""
            raise RuntimeError(f"the bench file server did not start: {err.strip()}")

    def files_url(self, path: str) -> str:
        return f"http://{self.session.host}:{FILES_PORT}/{path}"

    def stop(self) -> None:
        if self.fileserver is not None:
            kill_group(self.fileserver)
            self.fileserver = None

    def _web_seed_torrent(self) -> str:
        """Experiment: the daemon's torrent plus a url-list pointing at the bench file
        server's copy of the library; returns the URL the clients fetch it from."""
        files = self.files_url("files/")
        torrent = self.served / f"{OS_NAME}.torrent"
        torrent.write_bytes(with_url_list(self.session.torrent(), files))
        url = self.files_url(f"bench/{OS_NAME}.torrent")
        say(f"web seed experiment: clients use {url} (url-list {files})")
        return url

    # -- one run -----------------------------------------------------------------------------

    def counters(self, clients: list[Machine]) -> tuple[int, int]:
        """(bytes the server's eth0 sent, bytes the clients' eth0 received) so far."""
        return (iface_counters(self.server.ns)[1],
                sum(iface_counters(c.ns)[0] for c in clients))

    def fresh_dirs(self, mode: str, n: int) -> list[Path]:
        shutil.rmtree(self.data, ignore_errors=True)
        dirs = [self.data / f"c{i}" for i in range(n)]
        for d in dirs:
            d.mkdir(parents=True)
        self.logs(mode).mkdir(parents=True, exist_ok=True)
        return dirs

    def logs(self, mode: str) -> Path:
        return self.work / "logs" / mode

    def wait(self, label: str, n: int, timeout: float, done: Done, failed: Failed,
             sampler: Sampler) -> tuple[list[float | None], list[str]]:
        """Until every client is done or failed, or `timeout` (the rest then failed)."""
        progress = Progress(label, n, done, failed, sampler)
        try:
            wait_until(progress.poll, timeout=timeout, interval=POLL_S,
                       what=f"{label}: every client done")
        except TimeoutError:
            progress.give_up(f"not done after {timeout:.0f} s")
        return progress.outcome()

    def result(self, mode: str, rep: int, clients: list[Machine], before: tuple[int, int],
               outcome: tuple[list[float | None], list[str]], sampler: Sampler,
               seed_payload: int | None = None,
               first_data_at: float | None = None) -> RunResult:
        after = self.counters(clients)
        sampler.stop()
        finish, failures = outcome
        up, down = after[0] - before[0], after[1] - before[1]
        done = sorted(f for f in finish if f is not None)
        return RunResult(
            mode=mode, clients=len(clients), repeat=rep, completion_s=finish,
            t_all_s=done[-1] if len(done) == len(clients) else None,
            t_first_s=done[0] if done else None,
            t_median_s=statistics.median(done) if done else None,
            server_upload_bytes=up, clients_received_bytes=down,
            # Peer-to-peer exists in BitTorrent only; a multicast copy reaches N clients
            # while the server sends it once, which is not peer traffic.
            p2p_share=(round(max(0.0, (down - up) / down), 4) if down else 0.0)
            if mode == "boottorrent" else 0.0,
            # When the seed's first piece data reached a client (when a mode does not say,
            # when the server's interface had sent 256 KiB).
            seed_first_data_s=(round(first_data_at - sampler.t0, 3) if first_data_at
                               else sampler.first_data(256 * 1024)),
            seed_payload_bytes=seed_payload, host_cpu_busy=sampler.cpu_busy,
            failures=failures, timeline=sampler.timeline(),
        )

    def verify(self, result: RunResult, files: list[Path]) -> RunResult:
        """Every client's copy must be the library's file, byte for byte (--no-verify skips
        it; a run that failed already is not checked)."""
        if not self.settings.verify or result.failures:
            return result
        library = self.session.library / OS_NAME / PAYLOAD
        want = hashlib.sha256(library.read_bytes()).digest()
        for i, f in enumerate(files):
            try:
                got = hashlib.sha256(f.read_bytes()).digest()
            except FileNotFoundError:
                got = b""
            if got != want:
                result.failures.append(f"c{i}: its copy differs from the library's {PAYLOAD}")
        return result

    def timed(self, mode: str, rep: int, n: int, command: Callable[[int, Path], list[str]],
              timeout: float, before_launch: Callable[[], subprocess.Popen] | None = None,
              ) -> RunResult:
        """Every client runs `command(i, dest)`; each prints the time it finished."""
        clients = self.lab.clients[:n]
        dirs = self.fresh_dirs(mode, n)
        before = self.counters(clients)
        sampler = Sampler(partial(self.lab.bridge_side_traffic, clients), time.time())
        sampler.start()
        extra = before_launch() if before_launch else None
        out = [self.logs(mode) / f"c{i}-r{rep}.log" for i in range(n)]
        procs = [launch(c.ns, ["sh", "-c", '"$@" && date +DONE%s.%N', "sh",
                               *command(i, d / PAYLOAD)], out[i])
                 for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]

        def done(i: int) -> float | None:
            if procs[i].poll() is None:
                return None
            m = re.search(r"DONE(\d+\.\d+)", out[i].read_text(errors="replace"))
            return float(m.group(1)) if m else None

        def failed(i: int) -> str | None:
            if procs[i].poll() is not None and done(i) is None:
                tail = out[i].read_text(errors="replace").strip().splitlines()[-1:]
                return f"exited with status {procs[i].returncode}: {' '.join(tail)}"
            return None

        try:
            outcome = self.wait(f"{mode} N={n} #{rep + 1}", n, timeout, done, failed, sampler)
            result = self.result(mode, rep, clients, before, outcome, sampler)
        finally:
            for p in [*procs, *([extra] if extra else [])]:
                kill_group(p)
        return self.verify(result, [d / PAYLOAD for d in dirs])
