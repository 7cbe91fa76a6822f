"""The three ways N clients get the OS at the same moment, one function per mode.

- `boottorrent`: each client runs the phase-1 agent's download step (bench/agent.py)
  against the real daemon.
- `unicast`: every client fetches the payload file over HTTP from the bench file server
  on the daemon's address, the LTSP / plain PXE way.
- `multicast`: udp-sender to N udp-receivers, the FOG / Clonezilla way, paced just under
  the server's uplink.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.agent import aria2_complete_time, aria2_first_piece_time
from bench.bounds import kumar_ross_bound, unicast_bound
from bench.daemon import OS_NAME, PAYLOAD
from bench.network import Machine
from bench.proc import kill_group, launch, say
from bench.runner import Done, Failed, Runner, RunResult
from bench.sampler import Sampler
from boottorrentlab.devkit.agent import read_status

MCAST_PORTBASE = 9000
_BT_DONE_STATES = ("seeding", "verifying", "done")


def _fresh_session(runner: Runner) -> None:
    """Every wave after the first meets a seed that has not seen these addresses before
    (see --same-session for why that matters with transmission 3.00)."""
    if runner.boot_waves and not runner.settings.same_session:
        say("  restarting the boot session (boottorrentctl stop; boottorrentctl start)")
        runner.session.restart_session()
        time.sleep(runner.settings.settle)
    runner.boot_waves += 1


def _bt_checks(dirs: list[Path], procs: list[subprocess.Popen]) -> tuple[Done, Failed]:
    """When a client's bt-download has the whole OS, or why it will not."""
    def status(i: int) -> dict[str, str]:
        return read_status(dirs[i] / "run" / "dl" / "status")

    def done(i: int) -> float | None:
        if status(i).get("BT_STATE") not in _BT_DONE_STATES:
            return None
        return aria2_complete_time(dirs[i] / "run" / "dl" / "aria2c.log") or time.time()

    def failed(i: int) -> str | None:
        state = status(i)
        if state.get("BT_STATE") == "failed":
            return state.get("BT_ERROR") or "bt-download failed"
        if procs[i].poll() is not None:
            return f"exited with status {procs[i].returncode} before completing"
        return None

    return done, failed


@dataclass(frozen=True)
class _Swarm:
    """What differs between the modes in which the clients swarm on the daemon's seed."""

    mode: str
    # (client index, its machine, its folder) -> the command it runs
    command: Callable[[int, Machine, Path], list[str]]
    checks: Callable[[list[Path], list[subprocess.Popen]], tuple[Done, Failed]]
    copy: Callable[[Path], Path]  # a client's folder -> its copy of the payload
    # When the seed's first piece data reached a client (None: the sampler decides).
    first_data: Callable[[list[Path]], float | None] = lambda dirs: None
    keep_logs: Callable[[list[Path], Path, int], None] = lambda dirs, logs, rep: None


def _swarm(runner: Runner, n: int, rep: int, swarm: _Swarm) -> RunResult:
    """Every client joins the daemon's swarm at the same moment; counts what the seed sent."""
    _fresh_session(runner)
    session = runner.session
    clients = runner.lab.clients[:n]
    dirs = runner.fresh_dirs(swarm.mode, n)
    logs = runner.logs(swarm.mode)
    seed_before = session.seed_uploaded()
    before = runner.counters(clients)
    sampler = Sampler(partial(runner.lab.bridge_side_traffic, clients), time.time())
    sampler.start()
    procs = [launch(c.ns, swarm.command(i, c, d), logs / f"c{i}-r{rep}.log")
             for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]
    done, failed = swarm.checks(dirs, procs)
    timeout = 60 + 10 * kumar_ross_bound(runner.settings.size, n, runner.lab.links)
    try:
        outcome = runner.wait(f"{swarm.mode} N={n} #{rep + 1}", n, timeout, done, failed,
                              sampler)
        seed_sent = session.seed_uploaded() - seed_before
        result = runner.result(swarm.mode, rep, clients, before, outcome, sampler, seed_sent,
                               first_data_at=swarm.first_data(dirs))
    finally:
        for p in procs:
            kill_group(p)
        swarm.keep_logs(dirs, logs, rep)
    return runner.verify(result, [swarm.copy(d) for d in dirs])


def boottorrent(runner: Runner, n: int, rep: int) -> RunResult:
    session, settings = runner.session, runner.settings

    def first_data(dirs: list[Path]) -> float | None:
        return min((t for d in dirs if (t := aria2_first_piece_time(
            d / "run" / "dl" / "aria2c.log", session.host)) is not None), default=None)

    def keep_logs(dirs: list[Path], logs: Path, rep: int) -> None:
        for i, d in enumerate(dirs):
            with contextlib.suppress(OSError):
                shutil.copy(d / "run" / "dl" / "aria2c.log", logs / f"c{i}-r{rep}.aria2c.log")

    return _swarm(runner, n, rep, _Swarm(
        "boottorrent",
        lambda i, c, d: [str(runner.script), session.server, OS_NAME, str(d / "run"),
                         str(d / "os"), settings.aria2_extra, runner.torrent_url],
        _bt_checks, lambda d: d / "os" / OS_NAME / PAYLOAD, first_data, keep_logs))


def _lt_checks(dirs: list[Path], procs: list[subprocess.Popen]) -> tuple[Done, Failed]:
    """When a bench/ltclient.py client has the whole OS (it writes the time), or why not."""
    def done(i: int) -> float | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return float((dirs[i] / "complete").read_text())
        return None

    def failed(i: int) -> str | None:
        if procs[i].poll() is not None:
            return f"exited with status {procs[i].returncode} before completing"
        return None

    return done, failed


def lt_client(runner: Runner, n: int, rep: int) -> RunResult:
    """Experiment: the clients download with libtorrent (bench/ltclient.py), not aria2c."""
    url = f"http://{runner.session.server}/torrents/{OS_NAME}.torrent"
    return _swarm(runner, n, rep, _Swarm(
        "lt-client",
        lambda i, c, d: [sys.executable, "-m", "bench.ltclient", url, str(d), c.address,
                         str(runner.settings.lt_slots)],
        _lt_checks, lambda d: d / OS_NAME / PAYLOAD))


def unicast(runner: Runner, n: int, rep: int) -> RunResult:
    url = runner.files_url(f"files/{OS_NAME}/{PAYLOAD}")
    timeout = 60 + 3 * unicast_bound(runner.settings.size, n, runner.lab.links)
    return runner.timed("unicast", rep, n,
                        lambda i, dest: ["curl", "-sSf", "--noproxy", "*", "-o", str(dest), url],
                        timeout)


def multicast(runner: Runner, n: int, rep: int) -> RunResult:
    links = runner.lab.links
    # Paced just under the slowest link: faster, the shaper drops and udpcast
    # retransmits; that would be a badly tuned baseline, not the method's limit.
    rate = int(0.95 * min(links.server_up, links.client_down))
    src = runner.session.library / OS_NAME / PAYLOAD

    def sender() -> subprocess.Popen:
        return launch(runner.server.ns, [
            "udp-sender", "--file", str(src), "--interface", "eth0", "--nokbd",
            "--min-receivers", str(n), "--max-wait", "30", "--portbase",
            str(MCAST_PORTBASE), "--max-bitrate", f"{rate // 1000}k",
        ], runner.logs("multicast") / f"sender-r{rep}.log")

    timeout = 60 + 10 * kumar_ross_bound(runner.settings.size, n, links)
    return runner.timed("multicast", rep, n,
                        lambda i, dest: ["udp-receiver", "--file", str(dest), "--interface",
                                         "eth0", "--nokbd", "--portbase", str(MCAST_PORTBASE)],
                        timeout, before_launch=sender)


MODES: dict[str, Callable[[Runner, int, int], RunResult]] = {
    "boottorrent": boottorrent, "unicast": unicast, "multicast": multicast,
    "lt-client": lt_client,
}
