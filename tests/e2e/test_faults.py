"""Faults while QEMU machines download their OS (issue 14): kill -9 of each child, one
at a time, then of the daemon itself; every machine still reaches its OS.

One run for all of them: two machines and a seed held to 400 kB/s, so that they are
mid-download when the faults strike.
"""

import os
import signal

from boottorrentd.config.sections import SeederSection
from boottorrentd.session.seeding import CHILD
from boottorrentlab.lab import Lab, LabConfig
from tests.e2e.helpers import BOOT_TIMEOUT
from tests.reliability import current_test, record

SEED = CHILD[SeederSection().engine]
CHILDREN = ("dnsmasq", "tracker", SEED)


def child_pids(lab: Lab) -> dict[str, int]:
    return {c["name"]: c["pid"] for c in lab.status()["children"] if c["state"] == "running"}


def test_machines_mid_download_boot_through_kill_9_of_each_child_and_of_the_daemon(
        make_lab, oses):
    target = oses["kexec-a"]
    lab = make_lab(LabConfig(default_os=target.name, seed_time=10,
                             extra={"seeder": {"upload_limit_kbps": 400}}))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    vms = lab.boot(2)
    lab.wait_for(lambda: any(vm.stage == "downloading" for vm in vms), BOOT_TIMEOUT,
                 "a machine to download the OS")

    restarted = {}
    for name in CHILDREN:
        old = child_pids(lab)[name]
        os.kill(old, signal.SIGKILL)
        new = lab.wait_for(lambda n=name, o=old: (child_pids(lab).get(n) or o) != o
                           and child_pids(lab)[n], 60, f"the supervisor to restart {name}")
        assert new != old
        restarted[name] = (old, new)
    assert any(vm.stage == "downloading" for vm in vms), \
        "the machines finished before the daemon could be killed mid-download"

    assert lab.daemon is not None and lab.bus is not None
    lab.daemon.kill()
    lab.daemon.start(lab.bus.env, prefix=["setsid", "ip", "netns", "exec",
                                          lab.net.server.name])
    lab.wait_for(lambda: lab.status()["state"] == "running", 120,
                 "the restarted daemon to bring the session back")

    outcome = lab.wait(vms, marker=target.marker, timeout=BOOT_TIMEOUT + 180)
    assert outcome.ok, outcome.problems
    seen = lab.view.clients() if lab.view is not None else {}
    assert {vm.mac for vm in vms} <= set(seen), "the registry lost machines"
    for name, (old, new) in restarted.items():
        record("faults during real boots", f"kill -9 of {name} while 2 QEMU machines "
               "download", 1, f"restarted by the supervisor (pid {old} -> {new}, "
               "running); every machine reached its OS", current_test())
    record("faults during real boots", "the daemon SIGKILLed and restarted while 2 QEMU "
           "machines download", 1, "the session came back by itself; every machine "
           "reached its OS and is in the registry again", current_test())
