"""Small target OSes for the end-to-end tests, one per method; each prints a marker.

All are built from this host (busybox-static, the kernel in /boot) in about a second, so
the tests need no downloads and stay small enough for TCG.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from boottorrentlab.demo import BUSYBOX, build_demo_os

MIB = 1 << 20
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_CFG = """DEFAULT linux
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND console=ttyS0 quiet panic=-1
"""


@dataclass(frozen=True)
class TargetOS:
    name: str
    folder: Path
    marker: str


def kexec_os(parent: Path, name: str, marker: str) -> TargetOS:
    """The demo OS: kernel + busybox initramfs; prints `marker`, reports booted, powers off."""
    demo = build_demo_os(parent / name, name=name, marker=marker)
    return TargetOS(name, demo.folder, marker)


def unsigned_kexec_os(parent: Path, name: str, marker: str) -> TargetOS:
    """The demo OS with its kernel's Secure Boot signature removed (sbattach --remove):
    the same kernel, which a kernel under lockdown refuses to kexec."""
    target = kexec_os(parent, name, marker)
    subprocess.run(["sbattach", "--remove", str(target.folder / "vmlinuz")], check=True,
                   capture_output=True)
    return target


def bin_os(parent: Path, name: str, marker: str) -> TargetOS:
    """A `bin` OS: a shell script run by phase-1, which prints `marker` (ending in -OK).

    The marker's first part comes in through binargs, so it proves they arrived; phase-1
    echoes the arguments it runs the script with, so the script completes the word.
    """
    if not marker.endswith("-OK"):
        raise ValueError(f"the bin OS's marker must end in -OK, got {marker!r}")
    folder = parent / name
    folder.mkdir(parents=True)
    script = folder / "hello.sh"
    script.write_text("#!/bin/sh\necho \"$1-OK args=$# cwd=$(pwd)\"\n")
    script.chmod(0o755)
    (folder / "config.yaml").write_text(
        f"dispname: E2E bin\nmethod: bin\nbin: hello.sh\n"
        f"binargs: \"{marker.removesuffix('-OK')} second\"\n")
    return TargetOS(name, folder, marker)


LIVE_INIT = r"""#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
root=$(awk '$2 == "/" { print $3 }' /proc/mounts | tail -n 1)
echo "@MARKER@ root=$root pid=$$"
sync
poweroff -f
"""


def live_os(parent: Path, name: str, marker: str) -> TargetOS:
    """A `live` OS: a squashfs busybox root whose /sbin/init prints the marker and the
    filesystem type of / (an overlay in RAM, when phase-1 did its job), then powers off."""
    folder = parent / name
    root = parent / f"{name}-root"
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin/busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin/busybox").chmod(0o755)
    (root / "bin/sh").symlink_to("busybox")
    init = root / "sbin/init"
    init.write_text(LIVE_INIT.replace("@MARKER@", marker))
    init.chmod(0o755)
    folder.mkdir(parents=True)
    subprocess.run(["mksquashfs", str(root), str(folder / "root.squashfs"), "-noappend",
                    "-all-root", "-quiet", "-no-progress"], check=True, capture_output=True)
    (folder / "config.yaml").write_text(
        "dispname: E2E live\nmethod: live\nsquashfs: root.squashfs\ninit: /sbin/init\n")
    return TargetOS(name, folder, marker)


def bootable_disk(parent: Path, name: str, marker: str) -> Path:
    """A raw disk image a BIOS boots by itself: an MBR (syslinux's boot code) with one
    FAT partition at 1 MiB holding SYSLINUX, the demo OS's kernel and initramfs, which
    print `marker` on the serial console and power off. Built in about a second with
    mtools (no loop devices, no mounts)."""
    demo = build_demo_os(parent / f"{name}-files", name=name, marker=marker)
    files = [demo.folder / "vmlinuz", demo.folder / "initrd.img"]
    config = parent / f"{name}-files" / "syslinux.cfg"
    config.write_text(SYSLINUX_CFG)
    payload = sum(f.stat().st_size for f in files)
    part = (payload + 5 * MIB - 1) // MIB * MIB
    image = parent / f"{name}.img"
    with open(image, "wb") as f:
        f.truncate(MIB + part)
    for command in (
        ["mkfs.vfat", "--offset", str(MIB // 512), "-n", "BOOTTORRENT", str(image),
         str(part // 1024)],
        ["mcopy", "-i", f"{image}@@{MIB}", *map(str, files), str(config), "::"],
        ["syslinux", "--offset", str(MIB), "--install", str(image)],
    ):
        subprocess.run(command, check=True, capture_output=True)
    # One bootable FAT32 (LBA) partition; CHS fields say "use LBA".
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0C, b"\xfe\xff\xff",
                        MIB // 512, part // 512)
    with open(image, "r+b") as f:
        f.write(SYSLINUX_MBR.read_bytes()[:440])
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
    return image


def image_os(parent: Path, name: str, marker: str, *, compress: bool = False) -> TargetOS:
    """An `image` OS: `bootable_disk`, raw or zstd-compressed, written over the client's
    largest disk, which then reboots."""
    disk = bootable_disk(parent, name, marker)
    folder = parent / name
    folder.mkdir(parents=True)
    if compress:
        file = "disk.img.zst"
        subprocess.run(["zstd", "-q", str(disk), "-o", str(folder / file)], check=True,
                       capture_output=True)
    else:
        file = "disk.img"
        disk.rename(folder / file)
    (folder / "config.yaml").write_text(
        f"dispname: E2E disk {name}\nmethod: image\nimage: {file}\ntarget: largest\n"
        "after: reboot\n")
    return TargetOS(name, folder, marker)
