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
from functools import partial
from pathlib import Path

from bench.agent import aria2_complete_time, aria2_first_piece_time, read_status
from bench.bounds import kumar_ross_bound, unicast_bound
from bench.daemon import OS_NAME, PAYLOAD
from bench.proc import kill_group, launch, say
from bench.runner import Done, Failed, Runner, RunResult
from bench.sampler import Sampler

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


def boottorrent(runner: Runner, n: int, rep: int) -> RunResult:
    _fresh_session(runner)
    session, settings = runner.session, runner.settings
    clients = runner.lab.clients[:n]
    dirs = runner.fresh_dirs("boottorrent", n)
    logs = runner.logs("boottorrent")
    seed_before = session.seed_uploaded()
    before = runner.counters(clients)
    sampler = Sampler(partial(runner.lab.bridge_side_traffic, clients), time.time())
    sampler.start()
    procs = [launch(c.ns, [str(runner.script), session.server, OS_NAME, str(d / "run"),
                           str(d / "os"), settings.aria2_extra, runner.torrent_url],
                    logs / f"c{i}-r{rep}.log")
             for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]
    done, failed = _bt_checks(dirs, procs)
    timeout = 60 + 10 * kumar_ross_bound(settings.size, n, runner.lab.links)
    try:
        outcome = runner.wait(f"boottorrent N={n} #{rep + 1}", n, timeout, done, failed,
                              sampler)
        seed_sent = session.seed_uploaded() - seed_before
        first = [t for d in dirs if (t := aria2_first_piece_time(
            d / "run" / "dl" / "aria2c.log", session.host)) is not None]
        result = runner.result("boottorrent", rep, clients, before, outcome, sampler,
                               seed_sent, first_data_at=min(first, default=None))
    finally:
        for p in procs:
            kill_group(p)
        for i, d in enumerate(dirs):
            with contextlib.suppress(OSError):
                shutil.copy(d / "run" / "dl" / "aria2c.log", logs / f"c{i}-r{rep}.aria2c.log")
    return runner.verify(result, [d / "os" / OS_NAME / PAYLOAD for d in dirs])


def lt_client(runner: Runner, n: int, rep: int) -> RunResult:
    """Experiment: the clients download with libtorrent (bench/ltclient.py), not aria2c."""
    _fresh_session(runner)
    session = runner.session
    clients = runner.lab.clients[:n]
    dirs = runner.fresh_dirs("lt-client", n)
    logs = runner.logs("lt-client")
    seed_before = session.seed_uploaded()
    before = runner.counters(clients)
    sampler = Sampler(partial(runner.lab.bridge_side_traffic, clients), time.time())
    sampler.start()
    url = f"http://{session.server}/torrents/{OS_NAME}.torrent"
    procs = [launch(c.ns, [sys.executable, "-m", "bench.ltclient", url, str(d), c.address,
                           str(runner.settings.lt_slots)], logs / f"c{i}-r{rep}.log")
             for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]

    def done(i: int) -> float | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return float((dirs[i] / "complete").read_text())
        return None

    def failed(i: int) -> str | None:
        if procs[i].poll() is not None:
            return f"exited with status {procs[i].returncode} before completing"
        return None

    timeout = 60 + 10 * kumar_ross_bound(runner.settings.size, n, runner.lab.links)
    try:
        outcome = runner.wait(f"lt-client N={n} #{rep + 1}", n, timeout, done, failed, sampler)
        result = runner.result("lt-client", rep, clients, before, outcome, sampler,
                               session.seed_uploaded() - seed_before)
    finally:
        for p in procs:
            kill_group(p)
    return runner.verify(result, [d / OS_NAME / PAYLOAD for d in dirs])


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
