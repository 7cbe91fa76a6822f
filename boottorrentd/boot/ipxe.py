"""The iPXE scripts: the chain script every machine fetches first, and the script of
one machine's boot plan."""

from __future__ import annotations

from collections.abc import Collection

from boottorrentd.boot.plan import BootPlan, PlanKind
from boottorrentd.boot.render import (
    MESSAGE_PAUSE,
    NOT_BUILT_PAUSE,
    Qemu,
    cmdline_text,
    ipxe_text,
)
from boottorrentd.phase1.qemu import QEMU_IMAGE, QEMU_NOT_BUILT

# Internal script labels start with '_', which library names (NAME_RE) never do, so the
# OS names can be used as menu item names and labels without colliding with them.
_FAILED = "_bt_failed"
_CANCEL = "_bt_cancel"


def render_chain(server: str) -> str:
    """/boot.ipxe: the same for every machine; it fetches the machine's own script."""
    return (
        "#!ipxe\n"
        "# BootTorrent: fetch the boot script of this machine, by its MAC address.\n"
        f"chain http://{server}/boot/${{net0/mac}}.ipxe\n"
    )


def render_ipxe(
    plan: BootPlan, *, server: str, phase1_ready: bool, cmdline_extra: str = "",
    qemu_oss: Collection[str] = (), qemu_ready: bool = False,
) -> str:
    """The iPXE script that carries out `plan`.

    `server` is "host:port" of the boot HTTP server as the clients reach it. When
    `phase1_ready` is false no OS can boot, so the script only says how to fix that.
    The OSes in `qemu_oss` run in a virtual machine: phase-1 gets QEMU's initramfs too,
    or, unless `qemu_ready`, the machine is told that it is not built.
    """
    lines = ["#!ipxe", f"# BootTorrent boot script for {plan.mac}: {ipxe_text(plan.reason)}"]
    if plan.kind == PlanKind.NONE:
        lines += [
            f"echo BootTorrent: nothing to boot: {ipxe_text(plan.reason)}",
            "echo Dropping to the iPXE shell.",
            f"sleep {MESSAGE_PAUSE}",
            "shell",
        ]
    elif plan.kind == PlanKind.LOCAL:
        lines += _local_lines(plan)
    elif not phase1_ready:
        lines += [
            "echo BootTorrent: the phase-1 boot image is not built on the server yet.",
            "echo Build it there with: boottorrentctl build-client",
            f"echo This machine gives up in {NOT_BUILT_PAUSE} seconds: boot it again after that.",
            f"sleep {NOT_BUILT_PAUSE}",
            "exit",
        ]
    else:
        lines += _boot_lines(plan, server, cmdline_text(cmdline_extra),
                             Qemu(frozenset(qemu_oss), qemu_ready))
    return "\n".join(lines) + "\n"


def _local_lines(plan: BootPlan) -> list[str]:
    """Boot the machine's first disk: a BIOS through its INT 13 drive 0x80; UEFI firmware
    (and a BIOS whose iPXE cannot sanboot) by leaving iPXE, when the firmware moves on to
    its next boot entry, the disk."""
    return [
        f"echo BootTorrent: booting {plan.os} from this machine's disk",
        "iseq ${platform} efi && exit ||",
        "sanboot --no-describe --drive 0x80 ||",
        "exit",
    ]


def _boot_lines(plan: BootPlan, server: str, extra: str, qemu: Qemu) -> list[str]:
    """The menu (if any), one label per OS that loads phase-1 for it, and the fallbacks."""
    labels = {item.name: item.label for item in plan.items}
    if plan.kind == PlanKind.DIRECT:
        if plan.os is None:
            raise ValueError("a direct boot plan needs an os")
        lines: list[str] = []
        targets = [plan.os]
        labels.setdefault(plan.os, plan.os)
    elif plan.kind == PlanKind.MENU:
        lines = _menu_lines(plan)
        targets = [item.name for item in plan.items]
    else:
        kinds = ", ".join(PlanKind)
        raise ValueError(f"unknown boot plan kind {plan.kind!r}; expected one of {kinds}")

    for name in targets:
        lines += _phase1_lines(name, ipxe_text(labels[name]) or name, server, extra, qemu)
    if plan.kind == PlanKind.MENU:
        lines += [
            f":{_CANCEL}",
            "echo BootTorrent: no OS chosen, dropping to the iPXE shell.",
            "shell",
            "exit",
        ]
    lines += [
        f":{_FAILED}",
        f"echo BootTorrent: could not start the phase-1 image from http://{server}/phase1/",
        "echo Check that the boot server is running. This machine gives up in "
        f"{MESSAGE_PAUSE} seconds.",
        f"sleep {MESSAGE_PAUSE}",
        "exit",
    ]
    return lines


def _menu_lines(plan: BootPlan) -> list[str]:
    lines = ["menu BootTorrent: choose an operating system"]
    for item in plan.items:
        lines.append(f"item {item.name} {ipxe_text(item.label) or item.name}")
    choose = ["choose"]
    if plan.timeout > 0:
        choose.append(f"--timeout {plan.timeout * 1000}")
    if plan.default is not None:
        choose.append(f"--default {plan.default}")
    lines.append(" ".join(choose) + f" target && goto ${{target}} || goto {_CANCEL}")
    return lines


def _phase1_lines(name: str, label: str, server: str, extra: str, qemu: Qemu) -> list[str]:
    """The script label `name`: phase-1 over HTTP, told to fetch and start the OS `name`
    (with QEMU's initramfs after phase-1's when it runs in QEMU: the kernel unpacks both)."""
    if name in qemu.oss and not qemu.ready:
        # Phase-1 without QEMU could only fail once it has downloaded the OS.
        return [
            f":{name}",
            f"echo BootTorrent: {label} ({name}) runs in QEMU, and {ipxe_text(QEMU_NOT_BUILT)}",
            f"echo This machine gives up in {NOT_BUILT_PAUSE} seconds: boot it again after that.",
            f"sleep {NOT_BUILT_PAUSE}",
            "exit",
        ]
    cmdline = (
        f"initrd=initrd.img boottorrent.server={server} boottorrent.os={name} "
        "boottorrent.mac=${net0/mac}"
    )
    if extra:
        cmdline += f" {extra}"
    return [
        f":{name}",
        f"echo BootTorrent: starting {label} ({name})",
        f"kernel http://{server}/phase1/vmlinuz {cmdline} || goto {_FAILED}",
        f"initrd http://{server}/phase1/initrd.img || goto {_FAILED}",
        *([f"initrd http://{server}/phase1/{QEMU_IMAGE} || goto {_FAILED}"]
          if name in qemu.oss else []),
        f"boot || goto {_FAILED}",
    ]
