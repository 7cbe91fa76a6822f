"""BitTorrent among the booting machines: they share the OS, and need no seed once one has it."""

import time

from boottorrentd.util.wait import wait_until
from boottorrentlab.lab import Lab, LabConfig
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line
from tests.reliability import current_test, record


def _settled_seed_upload(lab: Lab, os_name: str) -> int | None:
    """What the seed uploaded of `os_name` once the daemon's statistics, refreshed every
    2 s, stopped changing for longer than that."""
    seen: list[tuple[float, int | None]] = []

    def settled() -> tuple[int | None] | None:
        seen.append((time.monotonic(), lab.view.seed_uploaded(os_name)))
        now, value = seen[-1]
        before = [v for t, v in seen if now - t >= 2.5]
        return (value,) if before and before[-1] == value else None

    return wait_until(settled, timeout=30, what=f"the seed's statistics of {os_name} to "
                      "settle", interval=0.5)[0]


def test_three_clients_boot_the_same_os_at_once_and_upload_to_each_other(make_lab, oses):
    target = oses["kexec-a"]
    # The seed sends at most ~1 MB/s, so the machines must trade pieces to finish soon.
    lab = make_lab(LabConfig(default_os=target.name, seed_time=10,
                             extra={"seeder": {"upload_limit_kbps": 1000}}))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    vms = lab.boot(3)

    outcome = lab.wait(vms, marker=target.marker, timeout=BOOT_TIMEOUT + 120)

    assert outcome.ok, outcome.problems
    size = sum(f.stat().st_size for f in target.folder.iterdir() if f.name != "config.yaml")
    assert all(vm.peak_down >= size for vm in vms), [vm.peak_down for vm in vms]
    seed = _settled_seed_upload(lab, target.name)
    uploaded = sum(vm.peak_up for vm in vms)
    downloaded = sum(vm.peak_down for vm in vms)
    from_peers = downloaded - seed if seed is not None else 0
    assert uploaded > 0 or from_peers > size // 10, (
        f"no BitTorrent among the clients: they report {uploaded} bytes uploaded; the seed "
        f"sent {seed} of the {downloaded} bytes they downloaded")
    for vm in vms:
        TIMINGS.append(timing_line("3 clients at once", vm))
    TIMINGS.append(f"{'3 clients at once':<34} seed sent {seed} B, clients downloaded "
                   f"{downloaded} B, reported uploading {uploaded} B to each other")


def test_a_late_client_boots_from_its_peers_alone_after_the_seed_is_stopped(make_lab, oses):
    target = oses["kexec-a"]
    # vm1 keeps seeding this long after its download: the window vm2 must fetch in.
    lab = make_lab(LabConfig(default_os=target.name, seed_time=75))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    (vm1,) = lab.boot(1)
    lab.wait_for(lambda: vm1.stage == "seeding", BOOT_TIMEOUT, "vm1 to have the whole OS")
    assert vm1.record["progress"] == 1.0

    # A real stop: the seed no longer has the OS, for the rest of the session.
    lab.ctl("stop-seeding", target.name)
    assert target.name not in [s["name"] for s in lab.status()["seeding"]]
    (vm2,) = lab.boot(1)
    outcome = lab.wait([vm2], marker=target.marker, timeout=BOOT_TIMEOUT)
    assert outcome.ok, outcome.problems
    assert target.name not in [s["name"] for s in lab.status()["seeding"]], \
        "the seed seeded the OS again during the test"
    size = sum(f.stat().st_size for f in target.folder.iterdir() if f.name != "config.yaml")
    assert vm2.peak_down >= size
    TIMINGS.append(timing_line("late client, seed stopped", vm2))
    TIMINGS.append(f"{'late client, seed stopped':<34} vm1 reported uploading "
                   f"{vm1.peak_up} B; vm2 downloaded {vm2.peak_down} B")
    record("faults during real boots", "the seed stopped for good (StopSeeding) once a "
           "machine holds the whole OS; a late machine boots", 1,
           "the late machine booted its OS from its peer alone", current_test())
