"""Re-imaging: machines write an OS image from the swarm over their disks, then boot it.

Run 1 PXE-boots each machine into phase-1, which writes the image over its disk and
reboots (the lab's QEMU ends at a reboot); run 2 PXE-boots it again, when the daemon
tells it to boot from its disk; run 3 starts it with the disk alone, no network at all.
"""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from boottorrentlab.lab import LabConfig
from tests.conftest import world_readable_tmpdir
from tests.e2e import images
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line

DISK_BYTES = 64 << 20
TINY_BYTES = 4 << 20
LOCAL_BOOT = "sanboot --no-describe --drive 0x80"


@pytest.fixture
def parent() -> Iterator[Path]:
    folder = world_readable_tmpdir("bt-e2e-disk-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def empty_disk(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def raw_image(target: images.TargetOS) -> bytes:
    if (target.folder / "disk.img").exists():
        return (target.folder / "disk.img").read_bytes()
    return subprocess.run(["zstd", "-dc", str(target.folder / "disk.img.zst")],
                          capture_output=True, check=True).stdout


def boot_disk_alone(disk: Path, console: Path) -> subprocess.Popen:
    """QEMU with `disk` as its only device: no NIC, so nothing can come from the network."""
    return subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config",
         "-display", "none", "-monitor", "none", "-serial", f"file:{console}", "-no-reboot",
         "-drive", f"file={disk},if=virtio,format=raw"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_machines_reimage_their_disks_from_the_swarm_and_then_boot_them(make_lab, parent):
    raw = images.image_os(parent, "disk-raw", "BT-E2E-DISK-RAW-OK")
    zst = images.image_os(parent, "disk-zst", "BT-E2E-DISK-ZST-OK", compress=True)
    lab = make_lab(LabConfig(timeout=-1, seed_time=5,
                             extra={"client": {"allow_disk_writes": True}}))
    lab.add_os(raw.name, raw.folder)
    lab.add_os(zst.name, zst.folder)
    lab.start_session()
    disks = [empty_disk(parent / f"disk{i}.raw", DISK_BYTES) for i in range(3)]
    tiny = empty_disk(parent / "tiny.raw", TINY_BYTES)
    machines = [lab.add_vm(disks=(disk,)) for disk in disks]
    targets = [raw, raw, zst]
    for vm, target in zip(machines, targets, strict=True):
        lab.ctl("assign", vm.mac, target.name)
    for vm in machines:
        lab.power_on(vm)

    # Run 1: each machine writes its disk, verifies it and reboots (its QEMU ends).
    lab.wait_for(lambda: all(vm.process.poll() is not None and vm.record.get("imaged_os")
                             for vm in machines),
                 2 * BOOT_TIMEOUT, "the machines to write their disks")

    for vm, target, disk in zip(machines, targets, disks, strict=True):
        assert vm.record["imaged_os"] == target.name
        image = raw_image(target)
        with open(disk, "rb") as f:
            assert f.read(len(image)) == image
        assert "verified" in vm.console_text(), vm.console_text()
        TIMINGS.append(timing_line(f"re-imaged with {target.name}", vm))
        # The next network boot of the machine is its own disk's.
        script = lab.net.server.run("curl", "-sSf", f"http://{lab.server}/boot/{vm.mac}.ipxe")
        assert LOCAL_BOOT in script.stdout and "phase1" not in script.stdout
    assert "writing disk.img.zst" in machines[2].console_text()

    # Run 2: PXE again; the daemon says "boot from your disk", and the disk's OS comes up.
    for vm in machines:
        lab.power_on(vm)
    lab.wait_for(lambda: all(t.marker in vm.console_text()
                             for vm, t in zip(machines, targets, strict=True)),
                 BOOT_TIMEOUT, "the machines to boot from their disks")
    for vm in machines:
        console = vm.console_text()
        assert "SYSLINUX" in console and "boottorrent: phase-1 agent" not in console, console
        assert vm.record["imaged_os"] and vm.record["stage"] != "failed"

    # A machine whose disk cannot hold the image refuses before it writes anything. (Alone:
    # four TCG machines at once on a busy host starve each other's DHCP.)
    small = lab.add_vm(disks=(tiny,))
    lab.ctl("assign", small.mac, raw.name)
    lab.power_on(small)
    lab.wait_for(lambda: small.stage == "failed", BOOT_TIMEOUT, "the small disk's refusal")
    assert "too small for disk-raw's image" in small.record["error"]
    assert "nothing was written" in small.record["error"]
    assert tiny.read_bytes() == bytes(TINY_BYTES)

    # Run 3: the disk alone, without a network card.
    lab.close()
    runs = [(boot_disk_alone(disk, parent / f"alone{i}.log"), parent / f"alone{i}.log")
            for i, disk in enumerate(disks)]
    for (process, console), target in zip(runs, targets, strict=True):
        _, err = process.communicate(timeout=BOOT_TIMEOUT)
        text = console.read_text(errors="replace")
        assert target.marker in text, (err, text)
