"""Small target OSes for the end-to-end tests, one per method; each prints a marker.

All are built from this host (busybox-static, the kernel in /boot) in about a second, so
the tests need no downloads and stay small enough for TCG.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.util.programs import find_program
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


# A boot sector (16-bit real mode, loaded at 0:7c00) that writes the text after it, up to
# a NUL, to the first serial port, waiting for the port to be ready before each byte, then
# halts: the smallest OS a VM under nested TCG can start in a second.
_SERIAL_BOOT_SECTOR = bytes([
    0xFA,                    # cli
    0x31, 0xC0,              # xor ax, ax
    0x8E, 0xD8,              # mov ds, ax
    0xFC,                    # cld
    0xBE, 0x23, 0x7C,        # mov si, 0x7c23 (the text, right after this code)
    0xAC,                    # next: lodsb
    0x84, 0xC0,              # test al, al
    0x74, 0x12,              # jz done
    0x88, 0xC4,              # mov ah, al
    0xBA, 0xFD, 0x03,        # mov dx, 0x3fd (COM1's line status)
    0xEC,                    # ready: in al, dx
    0xA8, 0x20,              # test al, 0x20 (transmitter empty)
    0x74, 0xFB,              # jz ready
    0xBA, 0xF8, 0x03,        # mov dx, 0x3f8 (COM1's data)
    0x88, 0xE0,              # mov al, ah
    0xEE,                    # out dx, al
    0xEB, 0xE9,              # jmp next
    0xF4,                    # done: hlt
    0xEB, 0xFD,              # jmp done
])


def qemu_os(parent: Path, name: str, marker: str) -> TargetOS:
    """A `qemu` OS: a 1 MiB disk whose boot sector prints `marker` on the VM's serial
    port (the client's console, as phase-1 runs QEMU with -nographic) and halts."""
    sector = _SERIAL_BOOT_SECTOR + f"\r\n{marker}\r\n".encode() + b"\0"
    if len(sector) > 510:
        raise ValueError(f"the marker {marker!r} does not fit in the boot sector")
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "disk.img").write_bytes(sector.ljust(510, b"\0") + b"\x55\xaa" + bytes(MIB - 512))
    (folder / "config.yaml").write_text(
        "dispname: E2E qemu\nmethod: qemu\n"
        "args: -m 16 -nic none -drive file=disk.img,format=raw,if=virtio\n")
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


# A Debian 13 root with systemd, the trixie kernel and live-boot/live-config (what a
# live-build image holds), built with mmdebstrap and kept here between runs (≈ 30-60 s to
# build, ≈ 150 MB); a new root when DEBIAN_RECIPE changes.
DEBIAN_CACHE = Path("/var/cache/boottorrent/debian-live")
DEBIAN_MIRROR = os.environ.get("BOOTTORRENT_MIRROR", "http://deb.debian.org/debian")
DEBIAN_MARKER = "BT-E2E-DEBIAN-LIVE-OK"
# What a lab OS has for its network: systemd-networkd asking for an address by DHCP on
# every Ethernet card (no vendor class: to the server, the machine's own OS asking).
DEBIAN_NETWORK = "[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\n"
# Small for TCG: no docs, locales or firmware, and of the kernel's modules only those a
# diskless machine with a serial console needs (the live root's loop, squashfs, overlay)
# and the lab's virtio NIC's (virtio_net and the failover modules it depends on).
DEBIAN_RECIPE = [
    "--variant=minbase", "--include=systemd-sysv,linux-image-amd64,initramfs-tools,"
    "live-boot,live-config,live-config-systemd",
    *(f"--dpkgopt=path-exclude=/usr/{p}/*" for p in (
        "share/doc", "share/man", "share/locale", "lib/firmware",
        "lib/modules/*/kernel/drivers", "lib/modules/*/kernel/sound",
        "lib/modules/*/kernel/net", "lib/modules/*/kernel/fs")),
    *(f"--dpkgopt=path-include=/usr/lib/modules/*/kernel/{p}" for p in (
        "fs/squashfs/*", "fs/overlayfs/*", "drivers/block/loop.ko*",
        "drivers/net/virtio_net.ko*", "drivers/net/net_failover.ko*",
        "net/core/failover.ko*")),
    f"--customize-hook=printf '{DEBIAN_NETWORK}' >\"$1/etc/systemd/network/50-dhcp.network\"",
    "--customize-hook=chroot \"$1\" systemctl enable systemd-networkd",
    "trixie",
]
# Prints the marker on the serial console once multi-user.target is reached.
MARKER_UNIT = f"""[Unit]
Description=BootTorrent e2e marker: multi-user.target reached
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "{DEBIAN_MARKER} target=$(systemctl is-active multi-user.target) \\
live-config=$(systemctl is-active live-config.service) kernel=$(uname -r) \\
root=$(stat -f -c %%T /)" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
"""


def debian_root() -> Path:
    """The cached Debian 13 root (mmdebstrap, trixie archive), built on a cache miss:
    minbase, systemd-sysv, systemd-networkd on DHCP, the kernel with its initramfs-tools
    initrd in /boot, and a unit printing DEBIAN_MARKER on ttyS0 at multi-user.target."""
    recipe = json.dumps([DEBIAN_MIRROR, *DEBIAN_RECIPE, MARKER_UNIT])
    # One folder per recipe: a run of a tree with another recipe (another branch, main's
    # CI) builds its own beside it instead of replacing the root a running test boots.
    root = DEBIAN_CACHE / f"root-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    DEBIAN_CACHE.mkdir(parents=True, exist_ok=True)
    with open(DEBIAN_CACHE / "lock", "w") as lock:
        # Another test run may be building it right now.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.is_dir():
            return root
        # Built under another name and renamed once whole: a build cut short is no root.
        building = root.with_name(root.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        built = subprocess.run([find_program("mmdebstrap", "mmdebstrap"), "--quiet",
                                *DEBIAN_RECIPE, str(building), DEBIAN_MIRROR],
                               capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"mmdebstrap could not build the Debian test root from "
                               f"{DEBIAN_MIRROR} (set BOOTTORRENT_MIRROR for another "
                               f"archive): {built.stderr.strip()[-2000:]}")
        units = building / "etc/systemd/system"
        (units / "bt-marker.service").write_text(MARKER_UNIT)
        (units / "multi-user.target.wants").mkdir(exist_ok=True)
        (units / "multi-user.target.wants/bt-marker.service").symlink_to(
            "/etc/systemd/system/bt-marker.service")
        building.rename(root)
    return root


def live_build_iso(parent: Path, root: Path) -> Path:
    """An ISO image laid out as live-build makes one (live/vmlinuz, live/initrd.img,
    live/filesystem.squashfs) from the Debian root, whose initrd has live-boot."""
    tree = parent / "iso-tree"
    (tree / "live").mkdir(parents=True)
    (kernel,) = (root / "boot").glob("vmlinuz-*")
    (initrd,) = (root / "boot").glob("initrd.img-*")
    shutil.copyfile(kernel, tree / "live/vmlinuz")
    shutil.copyfile(initrd, tree / "live/initrd.img")
    subprocess.run(["mksquashfs", str(root), str(tree / "live/filesystem.squashfs"),
                    "-noappend", "-comp", "zstd", "-wildcards", "-e", "boot/*", "-quiet",
                    "-no-progress"], check=True, capture_output=True)
    iso = parent / "debian-live.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "DEBIAN_LIVE",
                    "-o", str(iso), str(tree)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return iso
