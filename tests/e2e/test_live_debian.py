"""A real Debian 13 with systemd, made into a library OS with add-os --from, boots live from
the swarm with its own kernel on two machines."""

from boottorrentlab.lab import LabConfig
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
        TIMINGS.append(timing_line("Debian 13 live, own kernel", vm))
