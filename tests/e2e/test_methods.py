"""One client PXE-boots each method: iPXE → boot script → phase-1 over HTTP → the swarm."""

import pytest

from boottorrentlab.lab import LabConfig
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line


@pytest.mark.parametrize("name", ["kexec-a", "bin", "live"])
def test_one_client_boots_the_method_and_its_marker_appears(make_lab, oses, name):
    target = oses[name]
    lab = make_lab(LabConfig(default_os=target.name, seed_time=0))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    (vm,) = lab.boot(1)

    outcome = lab.wait([vm], marker=target.marker, timeout=BOOT_TIMEOUT)

    assert outcome.ok, outcome.problems
    assert vm.record["os"] == target.name
    console = vm.console_text()
    line = next(ln for ln in console.splitlines() if target.marker in ln)
    if name == "bin":
        # Both binargs words arrived as separate arguments.
        assert f"{target.marker} args=2" in line
    if name == "live":
        # Diskless: / is the tmpfs overlay over the read-only squashfs.
        assert "root=overlay" in line
    TIMINGS.append(timing_line(f"method {name}", vm))
