"""GRUB's config for UEFI machines on the signed chain: every machine's boot plan in one
file, branched by MAC."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from boottorrentd.boot.plan import BootPlan, PlanKind, plan_boot
from boottorrentd.boot.render import (
    MESSAGE_PAUSE,
    NOT_BUILT_PAUSE,
    Qemu,
    cmdline_text,
    ipxe_text,
    shell_quote,
)
from boottorrentd.config import Config
from boottorrentd.phase1.qemu import QEMU_IMAGE, QEMU_NOT_BUILT
from boottorrentd.util.mac import normalize_mac

# GRUB's variable for the MAC of the card it booted from (lower case, colons).
GRUB_MAC = "${net_default_mac}"


# A MAC no machine has (IEEE's reserved "null" address) stands for all the machines
# without an assignment when their common plan is made.
_ANY_MAC = "00:00:00:00:00:00"


def grub_config(
    oss: Mapping[str, str], assignments: Mapping[str, str], cfg: Config, *, server: str,
    phase1_ready: bool, imaged: Mapping[str, str] | None = None,
    qemu_oss: Collection[str] = (), qemu_ready: bool = False,
) -> str:
    """GRUB's config for every machine: `plan_boot` of each assigned or imaged MAC and of
    the rest, rendered by `render_grub` (the arguments are plan_boot's and render_ipxe's)."""
    imaged = imaged or {}
    assigned = {mac: plan_boot(mac, oss, assignments, cfg, imaged)
                for mac in {**assignments, **imaged}}
    others = plan_boot(_ANY_MAC, oss, {}, cfg)
    return render_grub(assigned, others, server=server, phase1_ready=phase1_ready,
                       cmdline_extra=cfg.client.extra_cmdline, qemu_oss=qemu_oss,
                       qemu_ready=qemu_ready)


def render_grub(
    assigned: Mapping[str, BootPlan], others: BootPlan, *, server: str, phase1_ready: bool,
    cmdline_extra: str = "", qemu_oss: Collection[str] = (), qemu_ready: bool = False,
) -> str:
    """grub/grub.cfg of UEFI machines on the signed chain: every machine's plan in one file.

    GRUB reads this file and phase-1 over TFTP, or over HTTP when UEFI HTTP Boot started
    it (the paths are relative to the server it came from). TFTP serves files, not
    answers: the file holds a branch per MAC with a plan of its own (`assigned`, by MAC),
    and `others`, the plan of every other machine. Each plan renders as `render_ipxe`
    renders it: the menu with its default and timeout (a negative one waits), or the OS
    at once, or why nothing boots. The OSes in `qemu_oss` run in a virtual machine: GRUB
    loads QEMU's initramfs after phase-1's for them, or, unless `qemu_ready`, says that
    it is not built.
    """
    extra = cmdline_text(cmdline_extra)
    qemu = Qemu(frozenset(qemu_oss), qemu_ready)
    lines = ["# BootTorrent GRUB config: the boot plan of every machine, by its MAC address."]
    branch = "if"
    for mac, plan in assigned.items():
        lines.append(f'{branch} [ "{GRUB_MAC}" = {normalize_mac(mac)} ]; then')
        lines += _indent(_grub_plan(plan, plan.mac, server, phase1_ready, extra, qemu))
        branch = "elif"
    body = _grub_plan(others, GRUB_MAC, server, phase1_ready, extra, qemu)
    if assigned:
        lines += ["else", *_indent(body), "fi"]
    else:
        lines += body
    return "\n".join(lines) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return [f"  {line}" for line in lines]


def _grub_plan(plan: BootPlan, mac: str, server: str, phase1_ready: bool,
               extra: str, qemu: Qemu) -> list[str]:
    lines = [f"# {ipxe_text(plan.reason)}"]
    if plan.kind == PlanKind.LOCAL:
        # Leaving GRUB hands the machine back to the firmware, which boots its next entry.
        return [*lines, _grub_echo(f"BootTorrent: booting {plan.os} from this machine's disk"),
                "exit"]
    if plan.kind == PlanKind.NONE:
        return [
            *lines,
            _grub_echo(f"BootTorrent: nothing to boot: {ipxe_text(plan.reason)}"),
            _grub_echo("Dropping to the GRUB shell."),
            f"sleep {MESSAGE_PAUSE}",
        ]
    if not phase1_ready:
        return [
            *lines,
            _grub_echo("BootTorrent: the phase-1 boot image is not built on the server yet."),
            _grub_echo("Build it there with: boottorrentctl build-client"),
            _grub_echo(f"This machine gives up in {NOT_BUILT_PAUSE} seconds: boot it again "
                       "after that."),
            f"sleep {NOT_BUILT_PAUSE}",
            "exit",
        ]
    if plan.kind == PlanKind.DIRECT:
        if plan.os is None:
            raise ValueError("a direct boot plan needs an os")
        label = ipxe_text(plan.items[0].label if plan.items else plan.os) or plan.os
        return lines + _grub_phase1(plan.os, label, mac, server, extra, qemu)
    if plan.kind != PlanKind.MENU:
        kinds = ", ".join(PlanKind)
        raise ValueError(f"unknown boot plan kind {plan.kind!r}; expected one of {kinds}")
    lines += [f"set timeout={plan.timeout if plan.timeout > 0 else -1}",
              "set timeout_style=menu"]
    if plan.default is not None:
        lines.append(f"set default={plan.default}")
    for item in plan.items:
        label = ipxe_text(item.label) or item.name
        lines += [f"menuentry {shell_quote(label)} --id {item.name} {{",
                  *_indent(_grub_phase1(item.name, label, mac, server, extra, qemu)), "}"]
    return lines


def _grub_echo(text: str) -> str:
    return f"echo {shell_quote(text)}"


def _grub_phase1(name: str, label: str, mac: str, server: str, extra: str,
                 qemu: Qemu) -> list[str]:
    """GRUB commands that load phase-1 from the server GRUB came from, told to fetch and
    start the OS `name` (with QEMU's initramfs after phase-1's when it runs in QEMU: GRUB's
    initrd loads the files one after the other in memory, and the kernel unpacks each over
    the last)."""
    initrds = ["/phase1/initrd.img"]
    if name in qemu.oss:
        if not qemu.ready:
            # Phase-1 without QEMU could only fail once it has downloaded the OS.
            return [
                _grub_echo(f"BootTorrent: {label} ({name}) runs in QEMU, and {QEMU_NOT_BUILT}"),
                _grub_echo(f"This machine gives up in {NOT_BUILT_PAUSE} seconds: boot it again "
                           "after that."),
                f"sleep {NOT_BUILT_PAUSE}",
                "exit",
            ]
        initrds.append(f"/phase1/{QEMU_IMAGE}")
    # One word per argument: GRUB's linux command puts an argument holding a space into
    # double quotes on the kernel command line. Single quotes keep GRUB from expanding
    # anything the admin wrote; GRUB expands only the MAC, in double quotes.
    words = [shell_quote(f"boottorrent.server={server}"), shell_quote(f"boottorrent.os={name}"),
             f'"boottorrent.mac={mac}"', *(shell_quote(word) for word in extra.split())]
    return [
        _grub_echo(f"BootTorrent: starting {label} ({name})"),
        f"if linux /phase1/vmlinuz {' '.join(words)}; then",
        f"  if initrd {' '.join(initrds)}; then",
        "    boot",
        "  fi",
        "fi",
        _grub_echo("BootTorrent: could not start the phase-1 image from the boot server"),
        _grub_echo(f"Check that the boot server is running. This machine gives up in "
                   f"{MESSAGE_PAUSE} seconds."),
        f"sleep {MESSAGE_PAUSE}",
        "exit",
    ]
