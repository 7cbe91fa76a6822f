"""Many machines on one server: the lab simulator (boottorrentlab.devkit.labsim) at N=32.

`make scale` runs the same simulator at N=50, 100 and 200; this is its check in CI.
"""

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from boottorrentd.bus.coalesce import BATCH, INTERVAL_S
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.daemon import venv_bin
from boottorrentlab.devkit.labsim import LabSim, SimConfig, SimResult

MACHINES = 32


@dataclass
class Run:
    result: SimResult
    watch: str  # what `boottorrentctl clients --watch` printed during the run


@pytest.fixture(scope="module")
def sim() -> Iterator[Run]:
    lab = LabSim(SimConfig(machines=MACHINES))
    watch_log = lab.workdir / "watch.log"
    last_summary = f"{MACHINES} clients: {MACHINES} booting;"
    try:
        with lab, open(watch_log, "w") as out:
            watch = subprocess.Popen([venv_bin("boottorrentctl"), "clients", "--watch",
                                      "--interval", "0.2"], env=lab.bus.env, stdout=out,
                                     stderr=subprocess.STDOUT)
            try:
                result = lab.run()
                # The last changes reach the watch through the bus; it draws them soon.
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda: last_summary in watch_log.read_text(), timeout=10,
                               what="the watch to draw the last stage")
            finally:
                watch.send_signal(signal.SIGINT)
                watch.wait(30)
        printed = watch_log.read_text()
    finally:
        print(f"\nlab simulator work folder: {lab.workdir}")
    yield Run(result, printed)
    if not result.failures:
        lab.remove_files()


def test_every_machine_gets_a_lease_and_a_verified_copy_of_its_os(sim: Run):
    assert sim.result.failures == []
    assert sim.result.leases == MACHINES
    assert sim.result.verified == MACHINES


def test_no_progress_report_is_lost(sim: Run):
    # Each machine's last report is what its D-Bus object says at the end.
    assert all(m.reports > 0 and m.last_report for m in sim.result.per_machine)
    assert sim.result.reports_lost == []
    assert all(m.final["stage"] == "booting" for m in sim.result.per_machine)


def test_the_bus_answers_reads_within_100_ms_at_p99_during_the_boot(sim: Run):
    assert sim.result.dbus_calls > 100
    assert sim.result.dbus_p99_ms < 100


def test_client_signals_stay_under_the_coalesced_rate(sim: Run):
    # Progress goes out at most BATCH objects a tick; each machine's stages (phase1,
    # downloading, verifying, seeding, booting, and DHCP and the boot script) may add one
    # each.
    stage_signals_per_machine = 7
    bound = BATCH / INTERVAL_S + stage_signals_per_machine * MACHINES
    assert sim.result.properties_changed_peak_per_s <= bound
    # Without coalescing every report (one a second a machine) would be a signal.
    assert sim.result.properties_changed < sum(m.reports for m in sim.result.per_machine)


def test_the_seed_sends_less_than_every_machine_fetching_the_os_from_it(sim: Run):
    assert sim.result.seed_uploaded_bytes < MACHINES * sim.result.size_bytes / 2


def test_clients_watch_follows_the_signals_to_every_machines_last_stage(sim: Run):
    # The watch reads the objects once and then only the signals: its last summary can
    # only say so if it saw every machine's last change.
    summaries = [line for line in sim.watch.splitlines() if " clients: " in line]
    assert summaries, sim.watch[-2000:]
    assert summaries[-1].startswith(f"{MACHINES} clients: {MACHINES} booting;")
