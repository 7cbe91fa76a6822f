"""Which OS a machine boots: its assignment, else default_os when the menu has no timeout."""

from boottorrentlab.lab import Lab, LabConfig
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line


def _boot_script(lab: Lab, mac: str) -> str:
    return lab.net.server.run("curl", "-sSf", f"http://{lab.server}/boot/{mac}.ipxe").stdout


def test_an_assigned_client_boots_its_os_without_the_menu(make_lab, oses):
    a, b = oses["kexec-a"], oses["kexec-b"]
    # A negative timeout makes the menu wait forever: only an assignment boots anything.
    lab = make_lab(LabConfig(timeout=-1, seed_time=0))
    lab.add_os(a.name, a.folder)
    lab.add_os(b.name, b.folder)
    lab.start_session()
    vm = lab.add_vm()
    lab.ctl("assign", vm.mac, b.name)
    script = _boot_script(lab, vm.mac)
    assert "choose" not in script and f"boottorrent.os={b.name}" in script
    lab.power_on(vm)

    outcome = lab.wait([vm], marker=b.marker, timeout=BOOT_TIMEOUT)

    assert outcome.ok, outcome.problems
    assert vm.record["os"] == b.name and vm.record["assigned_os"] == b.name
    assert a.marker not in vm.console_text()
    TIMINGS.append(timing_line("assigned OS", vm))


def test_with_timeout_zero_a_client_boots_the_default_os(make_lab, oses):
    a, b = oses["kexec-a"], oses["kexec-b"]
    # The default is the second OS in the library: not the first-OS fallback.
    lab = make_lab(LabConfig(timeout=0, default_os=b.name, seed_time=0))
    lab.add_os(a.name, a.folder)
    lab.add_os(b.name, b.folder)
    lab.start_session()
    (vm,) = lab.boot(1)

    outcome = lab.wait([vm], marker=b.marker, timeout=BOOT_TIMEOUT)

    assert outcome.ok, outcome.problems
    assert vm.record["os"] == b.name
    assert a.marker not in vm.console_text()
    TIMINGS.append(timing_line("default_os, timeout 0", vm))
