"""A real Debian 13 with systemd, made into a library OS with add-os --from (from its root,
and from a live-build ISO of it), boots live from the swarm with its own kernel."""

import json
import shutil

from boottorrentlab.lab import LabConfig
from tests.conftest import world_readable_tmpdir
from tests.e2e import images
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line


def test_a_debian_root_added_with_from_boots_live_with_its_own_kernel_on_two_machines(make_lab):
    root = images.debian_root()
    (kernel,) = [p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")]
    # Its own kernel and the squashfs (≈ 60 MB) stay in RAM beside systemd.
    lab = make_lab(LabConfig(default_os="debian", seed_time=10), memory_mb=1024)
    lab.add_os("debian", root, from_source=True,
               options=("--cmdline", "console=ttyS0 systemd.firstboot=no"))
    lab.start_session()
    vms = lab.boot(2)

    outcome = lab.wait(vms, marker=images.DEBIAN_MARKER, timeout=BOOT_TIMEOUT + 180)

    assert outcome.ok, outcome.problems
    library = lab.state_dir / "oss/debian"
    assert sorted(p.name for p in library.iterdir()) == [
        "config.yaml", "initrd.img", "root.squashfs", "vmlinuz"]
    size = sum(p.stat().st_size for p in library.iterdir() if p.name != "config.yaml")
    for vm in vms:
        assert vm.record["os"] == "debian"
        # Both got the whole OS over BitTorrent before starting it.
        assert vm.peak_down >= size, (vm.name, vm.peak_down, size)
        line = next(ln for ln in vm.console_text().splitlines() if images.DEBIAN_MARKER in ln)
        # systemd reached multi-user.target on the OS's kernel (phase-1 runs the host's),
        # with the squashfs under a tmpfs overlay as its root.
        assert "target=active" in line, line
        assert f"kernel={kernel}" in line, line
        assert "root=overlayfs" in line, line
        # No boot=live: live-boot and live-config in the root stay out of it.
        assert "live-config=inactive" in line, line
        TIMINGS.append(timing_line("Debian 13 live, own kernel", vm))

    # The OS knows nothing of the server: its own DHCP request (systemd-networkd's) tells the
    # daemon it is up, phase-1 having given its address back at the kexec.
    lab.wait_for(lambda: all(vm.record.get("stage") == "booted" for vm in vms),
                 timeout=120, what="the Debian machines to be booted")
    listed = {c["mac"]: c for c in json.loads(lab.ctl("clients", "--json").stdout)}
    for vm in vms:
        client = listed[vm.mac]
        assert (client["stage"], client["os"], client["error"]) == ("booted", "debian", ""), client
        assert client["ip"], client


def test_a_live_build_iso_added_with_from_boots_with_live_config_on_its_own_kernel(make_lab):
    root = images.debian_root()
    parent = world_readable_tmpdir("bt-e2e-iso-")
    try:
        iso = images.live_build_iso(parent, root)
        lab = make_lab(LabConfig(default_os="desk", seed_time=0), memory_mb=1024)
        # What add-os recognises for live-build (boot=live components) and a serial console.
        lab.add_os("desk", iso, from_source=True, options=(
            "--cmdline", "boot=live components console=ttyS0 systemd.firstboot=no"))
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    lab.start_session()
    (vm,) = lab.boot(1)

    outcome = lab.wait([vm], marker=images.DEBIAN_MARKER, timeout=BOOT_TIMEOUT + 180)

    assert outcome.ok, outcome.problems
    line = next(ln for ln in vm.console_text().splitlines() if images.DEBIAN_MARKER in ln)
    # The initramfs took boot=boottorrent (the last boot=) for the root, and live-config
    # saw boot=live and set up the live system.
    assert "target=active" in line and "root=overlayfs" in line, line
    assert "live-config=active" in line, line
    TIMINGS.append(timing_line("live-build ISO, own kernel", vm))
    # live-config leaves the root's own DHCP client in charge: its request makes it booted.
    lab.wait_for(lambda: vm.record.get("stage") == "booted", timeout=120,
                 what="the live-build machine to be booted")
