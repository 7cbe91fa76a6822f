"""What a machine boots: one pure decision, rendered for iPXE, GRUB and phase-1.

`plan_boot` takes the client's MAC, the library, the assignments and the config and
returns a `BootPlan`; nothing else decides which OS a machine gets. The iPXE scripts
(`render_ipxe`, `render_chain`), the GRUB config of UEFI machines on the signed chain
(`render_grub`) and the phase-1 boot spec (`boot_json`) only render a
plan or an entry, so protocols carry the decision without making it. No I/O here: the
whole module is tested without sockets or files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from boottorrentd.config import BootSection, Config
from boottorrentd.library.store import OSEntry
from boottorrentd.phase1.qemu import QEMU_IMAGE, QEMU_METHODS, QEMU_NOT_BUILT
from boottorrentd.util.mac import normalize_mac


class PlanKind(StrEnum):
    """What a machine is given: the menu, one OS at once, its own disk (it was imaged), or
    only the reason it gets none."""

    MENU = "menu"
    DIRECT = "direct"
    LOCAL = "local"
    NONE = "none"


# Seconds a failure message stays on the client's screen before the script moves on.
MESSAGE_PAUSE = 10
# Longer when phase-1 is not built: the admin needs time to read how to build it, and
# the firmware retrying sooner would only print the same message again.
NOT_BUILT_PAUSE = 30

# iPXE expands ${...} anywhere in a line, splits words on whitespace, treats a word that
# starts with '#' as a comment, '&&', '||' and ';' as command separators, and newer
# versions give quotes and backslashes meaning. Display text keeps only characters with
# none of those roles; iPXE consoles are not UTF-8 either, so accents are folded to ASCII.
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9 _.,:!?()\[\]+=@%*~<>/^-]")

# Internal script labels start with '_', which library names (NAME_RE) never do, so the
# OS names can be used as menu item names and labels without colliding with them.
_FAILED = "_bt_failed"
_CANCEL = "_bt_cancel"


@dataclass(frozen=True)
class MenuItem:
    name: str
    label: str


@dataclass(frozen=True)
class BootPlan:
    """What one machine boots.

    MENU: `items` in order, `default` preselected (booted after `timeout` seconds when it
    is positive; a negative timeout waits forever). DIRECT: `os` at once; `items` holds
    just that OS, for its label. LOCAL: the machine's first disk, where `os` was written.
    NONE: nothing to boot; `reason` says why. `reason` always explains the choice.
    """

    mac: str
    kind: PlanKind
    items: tuple[MenuItem, ...]
    default: str | None
    timeout: int
    os: str | None
    reason: str


def plan_boot(
    mac: str,
    oss: Mapping[str, str],
    assignments: Mapping[str, str],
    cfg: Config,
    imaged: Mapping[str, str] | None = None,
) -> BootPlan:
    """The boot plan of the machine `mac`.

    `oss` maps the library's OS names to their dispnames, in library order; `assignments`
    maps MACs (in normalize_mac form) to OS names; `imaged` maps the MACs of machines
    whose disks were imaged to the OS written there: they boot from their disks, until an
    operator assigns them again. Raises ValueError for a bad MAC.
    """
    mac = normalize_mac(mac)
    boot = cfg.boottorrent
    notes: list[str] = []

    written = (imaged or {}).get(mac)
    if written is not None:
        return BootPlan(mac, PlanKind.LOCAL, (), None, 0, written,
                        f"{mac} holds {written} on its disk since it was imaged; it boots "
                        "from that disk until it is assigned again (boottorrentctl assign)")

    assigned = assignments.get(mac)
    if assigned is not None:
        if assigned in oss:
            return BootPlan(mac, PlanKind.DIRECT, (MenuItem(assigned, oss[assigned]),),
                            assigned, 0, assigned, f"{mac} is assigned to {assigned}")
        # A removed OS must not strand the machine: it gets the menu like any other.
        notes.append(f"its assigned OS {assigned} is not in the library, so the menu applies")

    shown = _shown(boot, oss, notes)
    items = tuple(MenuItem(name, oss[name]) for name in shown)

    if not items:
        if not oss:
            why = "the OS library is empty; add an OS with `boottorrentctl add-os NAME DIR`"
        else:
            listed = ", ".join(boot.display_oss or ())
            why = (f"none of display_oss ({listed or 'an empty list'}) is in the library; "
                   "add them, or change boottorrent.display_oss")
        return BootPlan(mac, PlanKind.NONE, (), None, 0, None, _join([why, *notes]))

    default = boot.default_os if boot.default_os in shown else None

    if boot.timeout < 0:
        # Nothing boots without a choice, so a missing default needs no fallback.
        notes.insert(0, "the menu waits for a choice (timeout is negative)")
        return BootPlan(mac, PlanKind.MENU, items, default, boot.timeout, None, _join(notes))

    if default is None:
        if boot.default_os is None:
            why = "default_os is not set"
        elif boot.default_os in oss:
            why = f"default_os {boot.default_os} is not shown"
        else:
            why = f"default_os {boot.default_os} is not in the library"
        default = shown[0]
        notes.append(f"{why}, so the first shown OS, {default}, is the default")

    if boot.timeout == 0:
        notes.insert(0, f"timeout is 0: {default} boots at once")
        direct = (MenuItem(default, oss[default]),)
        return BootPlan(mac, PlanKind.DIRECT, direct, default, 0, default, _join(notes))
    notes.insert(0, f"menu; {default} boots after {boot.timeout} s")
    return BootPlan(mac, PlanKind.MENU, items, default, boot.timeout, None, _join(notes))


def _shown(boot: BootSection, oss: Mapping[str, str], notes: list[str]) -> list[str]:
    """The OSes the menu shows: display_oss (those in the library), else all of them."""
    if boot.display_oss is None:
        return list(oss)
    shown = [name for name in boot.display_oss if name in oss]
    missing = [name for name in boot.display_oss if name not in oss]
    if missing and shown:
        notes.append(f"display_oss names {', '.join(missing)}, not in the library")
    return shown


def _join(notes: list[str]) -> str:
    return "; ".join(notes)


def ipxe_text(text: str) -> str:
    """`text` made safe to stand as plain words in an iPXE script line."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    # Reasons join their parts with "; ", which must stay readable.
    return " ".join(_UNSAFE_TEXT.sub(" ", folded.replace(";", ",")).split())


def _cmdline_text(text: str) -> str:
    # The admin's extra arguments may use iPXE settings such as ${net0/ip} on purpose, so
    # only what could end the line (and with it inject commands) is removed.
    return " ".join("".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text).split())


def qemu_oss(entries: Mapping[str, OSEntry]) -> list[str]:
    """The OSes of `entries` that run in a virtual machine: phase-1 needs QEMU's
    initramfs for them (render_ipxe's and render_grub's `qemu_oss`)."""
    return [name for name, entry in entries.items() if entry.spec.method in QEMU_METHODS]


def render_chain(server: str) -> str:
    """/boot.ipxe: the same for every machine; it fetches the machine's own script."""
    return (
        "#!ipxe\n"
        "# BootTorrent: fetch the boot script of this machine, by its MAC address.\n"
        f"chain http://{server}/boot/${{net0/mac}}.ipxe\n"
    )


@dataclass(frozen=True)
class _Qemu:
    """The OSes that run in a virtual machine, and whether QEMU's initramfs is built."""

    oss: frozenset[str]
    ready: bool


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
        lines += _boot_lines(plan, server, _cmdline_text(cmdline_extra),
                             _Qemu(frozenset(qemu_oss), qemu_ready))
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


def _boot_lines(plan: BootPlan, server: str, extra: str, qemu: _Qemu) -> list[str]:
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


def _phase1_lines(name: str, label: str, server: str, extra: str, qemu: _Qemu) -> list[str]:
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
    extra = _cmdline_text(cmdline_extra)
    qemu = _Qemu(frozenset(qemu_oss), qemu_ready)
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
               extra: str, qemu: _Qemu) -> list[str]:
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
                 qemu: _Qemu) -> list[str]:
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


def _flag(value: bool) -> str:
    return "true" if value else "false"


def boot_json(entry: OSEntry, cfg: Config, *, server: str) -> dict:
    """What phase-1 needs to fetch, verify, seed and start `entry`.

    The aria2 options are keyed by aria2c's own option names with string values, so the
    busybox client turns each into `--name=value` without knowing what it means.
    """
    aria2 = cfg.aria2
    return {
        "name": entry.name,
        "dispname": entry.spec.dispname,
        "spec": entry.spec.boot_spec(),
        "infohash": entry.torrent.infohash,
        "size_bytes": entry.size_bytes,
        "torrent_url": f"http://{server}/torrents/{entry.name}.torrent",
        "seed_time": cfg.boottorrent.seed_time,
        "aria2": {
            "bt-enable-lpd": _flag(aria2.bt_enable_lpd),
            "enable-peer-exchange": _flag(cfg.swarm.peer_exchange),
            "enable-dht": _flag(aria2.enable_dht),
            "enable-dht6": _flag(aria2.enable_dht6),
            "check-integrity": _flag(aria2.check_integrity),
            "console-log-level": aria2.console_log_level,
            "bt-tracker-interval": str(cfg.tracker.announce_interval),
        },
        # {mac} is filled in by the client: this document is the same for every machine.
        "report_url": f"http://{server}/api/v1/clients/{{mac}}/events",
        "report_interval": cfg.client.report_interval,
        "allow_disk_writes": cfg.client.allow_disk_writes,
        **_image_bytes(entry),
    }


def _image_bytes(entry: OSEntry) -> dict[str, int]:
    """An image OS's image size: the client checks its disk holds it before it writes."""
    if entry.spec.method != "image":
        return {}
    image = tuple(entry.spec.fields["image"].split("/"))
    sizes = [f.length for f in entry.torrent.files if tuple(f.path) == image]
    return {"image_bytes": sizes[0] if sizes else 0}


_ENV_PREFIX = "BT"


def shell_quote(value: str) -> str:
    """`value` as one single-quoted POSIX shell word (nothing inside is expanded)."""
    if "\0" in value:
        raise ValueError("a shell value cannot hold a NUL character")
    return "'" + value.replace("'", "'\\''") + "'"


def _env_value(value: object, name: str) -> str:
    if isinstance(value, bool):
        return _flag(value)
    if value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(f"{name}: boot.env has no form for {type(value).__name__} values")


def _flatten(prefix: str, data: Mapping, out: dict[str, str]) -> None:
    for key, value in data.items():
        name = f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(key)).upper()}"
        if isinstance(value, Mapping):
            _flatten(name, value, out)
            continue
        if name in out:
            # Keys differing only in punctuation or case would overwrite each other.
            raise ValueError(f"boot.env: two keys become {name}")
        out[name] = _env_value(value, name)


def boot_env(entry: OSEntry, cfg: Config, *, server: str) -> str:
    """`boot_json` as shell assignments, for the busybox client, which cannot parse JSON.

    Every key of boot.json becomes BT_<KEY> (nested ones BT_<KEY>_<SUBKEY>, e.g.
    BT_SPEC_KERNEL, BT_ARIA2_BT_ENABLE_LPD), every value a single-quoted word, so that
    `. boot.env` runs nothing. BT_ARIA2_OPTS adds the aria2 options as `--name=value`
    arguments, ready to be split into words.
    """
    doc = boot_json(entry, cfg, server=server)
    values: dict[str, str] = {}
    _flatten(_ENV_PREFIX, doc, values)
    opts = []
    for key, value in doc["aria2"].items():
        text = _env_value(value, key)
        if not text or any(ch.isspace() for ch in text + key):
            # The option list is split on whitespace by the client.
            raise ValueError(f"aria2 option {key}={text!r} cannot be passed as one word")
        opts.append(f"--{key}={text}")
    if f"{_ENV_PREFIX}_ARIA2_OPTS" in values:
        raise ValueError(f"boot.env: {_ENV_PREFIX}_ARIA2_OPTS is taken by an aria2 option")
    values[f"{_ENV_PREFIX}_ARIA2_OPTS"] = " ".join(opts)
    lines = ["# BootTorrent boot spec for phase-1; read it with: . ./boot.env"]
    lines += [f"{name}={shell_quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"
