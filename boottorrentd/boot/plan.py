"""What a machine boots: one pure decision, rendered by ipxe.py and grub.py.

`plan_boot` takes the client's MAC, the library, the assignments and the config and
returns a `BootPlan`; nothing else decides which OS a machine gets. The iPXE scripts
(ipxe.py) and GRUB's config (grub.py) only render a plan, so protocols carry the decision
without making it. No I/O here: the whole module is tested without sockets or files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from boottorrentd.config import BootSection, Config
from boottorrentd.util.mac import normalize_mac


class PlanKind(StrEnum):
    """What a machine is given: the menu, one OS at once, its own disk (it was imaged), or
    only the reason it gets none."""

    MENU = "menu"
    DIRECT = "direct"
    LOCAL = "local"
    NONE = "none"


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
