"""The demo OS: a small OS built from this host, which `make demo` and the lab boot.

The demo OS is the host's own kernel and a tiny busybox initramfs (method kexec). Its init
gets an address, tells the daemon it is up (stage "booted"), prints a marker line on the
serial console and powers the machine off. It is the lab's default OS: `boottorrentctl lab`
(boottorrentlab.lab) boots it through the whole mission on a virtual LAN: PXE, iPXE,
phase-1, BitTorrent among the clients, kexec.

The initramfs is put together with phase-1's own archive and module helpers
(boottorrentd.phase1.build): one cpio writer and one module resolver in the project.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.phase1 import build as phase1

BUSYBOX = Path("/bin/busybox")
MODULES = Path("/lib/modules")
MARKER = "BOOTTORRENT-DEMO-OK"
# The NIC of the lab's virtual machines; a real lab would need more (phase-1 has them).
VIRTIO_NET_MODULES = ("virtio_pci", "virtio_net")
# The lab's boot HTTP port: the demo OS reports to it (see lab.config.HTTP_PORT).
DEFAULT_REPORT_PORT = 8080


def add_busybox(archive: phase1.Archive) -> None:
    """busybox-static as /bin/busybox with /bin/sh; init installs the other applets."""
    # A dynamic busybox would need its libraries too; busybox-static needs nothing.
    probe = subprocess.run(["ldd", str(BUSYBOX)], capture_output=True, text=True)
    if not BUSYBOX.exists() or "not a dynamic" not in probe.stdout + probe.stderr:
        raise RuntimeError(f"{BUSYBOX} is not a static busybox; install busybox-static")
    archive.add_file("bin/busybox", BUSYBOX.read_bytes(), executable=True)
    archive.add_symlink("bin/sh", "busybox")
    for folder in ("dev", "proc", "sys", "tmp", "run", "sbin", "etc", "root"):
        archive.add_dir(folder)


def add_modules(archive: phase1.Archive, kernel_version: str, names: tuple[str, ...]) -> None:
    """The modules and what they need, decompressed (busybox insmod reads plain ELF), plus
    lib/modules/load-order: their file names, dependencies first."""
    base = MODULES / kernel_version
    dep = phase1.parse_modules_dep((base / "modules.dep").read_text())
    builtin = (base / "modules.builtin").read_text().split()
    paths, missing = phase1.resolve_modules(dep, names, builtin)
    if missing:
        raise RuntimeError(f"kernel {kernel_version} has no module {', '.join(missing)}")
    files = [f"{phase1.module_name(p)}.ko" for p in paths]
    for path, file in zip(paths, files, strict=True):
        archive.add_file(f"lib/modules/{file}", phase1.decompress_module(base / path))
    archive.add_file("lib/modules/load-order", "".join(f"{f}\n" for f in files).encode())


def write_initrd(archive: phase1.Archive, path: Path) -> int:
    """The archive as a gzip'd initramfs (the same bytes for the same archive); its size."""
    data = gzip.compress(b"".join(archive.chunks()), compresslevel=6, mtime=0)
    path.write_bytes(data)
    return len(data)


# The demo OS's init. It runs as PID 1 of the kexec'd kernel: no udev, no modprobe.
DEMO_INIT = r"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m 2>/dev/null; done
mac=$(cat /sys/class/net/eth0/address 2>/dev/null)
ip=none
# Up and on the network: tell the boot server, so its client object says "booted".
if [ -n "$mac" ] && ip link set eth0 up &&
   udhcpc -i eth0 -s /etc/udhcpc.script -t 4 -T 1 -n -q >/dev/null 2>&1; then
    read ip server < /tmp/lease
    # timeout, not wget -T: busybox-static 1.35's wget crashes (SIGSEGV) with -T.
    timeout 5 wget -q -O /dev/null --header "Content-Type: application/json" \
        --post-data '{"stage":"booted","progress":1}' \
        "http://$server:@PORT@/api/v1/clients/$mac/events" 2>/dev/null
fi
hostname "demo-$(echo "$mac" | tr -d : | tail -c 7)"
echo "@MARKER@ host=$(hostname) mac=$mac ip=$ip kernel=$(uname -r)"
# Secure Boot on: the kernel locks itself down ([integrity]).
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "@NAME@: lockdown $(cat /sys/kernel/security/lockdown 2>/dev/null || echo unknown)"
echo "@NAME@: booted from the swarm; powering off."
sync
poweroff -f
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
    echo "$ip ${serverid:-$siaddr}" > /tmp/lease
    ;;
esac
exit 0
"""


@dataclass(frozen=True)
class DemoOS:
    folder: Path
    name: str
    marker: str
    kernel_version: str
    size_bytes: int


def build_demo_os(folder: Path, *, name: str = "demo", marker: str = MARKER,
                  kernel_version: str | None = None,
                  report_port: int = DEFAULT_REPORT_PORT) -> DemoOS:
    """Write a kexec OS folder: the host's kernel, a busybox initramfs, config.yaml.

    Booted, it prints `marker` (followed by host=, mac=, ip=, kernel=) on the serial
    console and powers off.
    """
    version, kernel = phase1.find_kernel(kernel_version)
    folder.mkdir(parents=True, exist_ok=True)
    archive = phase1.Archive()
    add_busybox(archive)
    add_modules(archive, version, VIRTIO_NET_MODULES)
    init = (DEMO_INIT.replace("@MARKER@", marker).replace("@NAME@", name)
            .replace("@PORT@", str(report_port)))
    archive.add_file("init", init.encode(), executable=True)
    archive.add_file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), executable=True)
    shutil.copyfile(kernel, folder / "vmlinuz")
    write_initrd(archive, folder / "initrd.img")
    (folder / "config.yaml").write_text(
        f"dispname: BootTorrent demo ({name})\n"
        "method: kexec\n"
        "kernel: vmlinuz\n"
        "initrd: initrd.img\n"
        # ttyS0 last: that is where the lab reads the marker; panic=-1 turns a broken
        # init into a reset, which the lab sees as the machine stopping.
        "cmdline: console=tty0 console=ttyS0 quiet panic=-1\n")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return DemoOS(folder, name, marker, version, size)
