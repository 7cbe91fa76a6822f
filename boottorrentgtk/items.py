"""The daemon's objects as list items: a machine (org.boottorrent1.Client) and an OS.

Each item keeps the object's properties as the bus last said them and tells its widgets
with one "changed" signal naming what changed; nothing here talks to the bus.
"""

from typing import Any, ClassVar

from gi.repository import GLib, GObject

# Words for each stage of a machine's boot (the registry's stages, in boot order).
STAGE_WORDS = {
    "": "Seen",
    "dhcp": "Got an address",
    "menu": "At the boot menu",
    "phase1": "Loading phase 1",
    "downloading": "Downloading",
    "seeding": "Seeding",
    "booting": "Starting the OS",
    "booted": "Booted",
    "failed": "Failed",
}
STAGE_ORDER = {stage: i for i, stage in enumerate(STAGE_WORDS)}


def rate(bytes_per_s: int) -> str:
    return f"{GLib.format_size(bytes_per_s)}/s"


class DBusItem(GObject.Object):
    """One object of the daemon: its path and its interface's properties."""

    __gsignals__: ClassVar[dict] = {"changed": (GObject.SignalFlags.RUN_FIRST, None, (object,))}

    def __init__(self, path: str, props: dict[str, Any]) -> None:
        super().__init__()
        self.path = path
        self.props_: dict[str, Any] = dict(props)

    def update(self, changed: dict[str, Any]) -> set[str]:
        """Take the changed properties; emit "changed" with the names that differ."""
        names = {k for k, v in changed.items() if self.props_.get(k) != v}
        if names:
            self.props_.update(changed)
            self.emit("changed", names)
        return names

    def get(self, name: str, default: Any = "") -> Any:
        return self.props_.get(name, default)


class Machine(DBusItem):
    """A machine on the boot network."""

    # What the wall sorts and filters by: a change of these moves the machine in the list.
    PLACE_KEYS = frozenset({"MAC", "Hostname", "IPAddress", "OS", "AssignedOS", "Stage"})

    @property
    def mac(self) -> str:
        return self.get("MAC")

    @property
    def name(self) -> str:
        return self.get("Hostname") or self.mac

    @property
    def stage(self) -> str:
        return self.get("Stage")

    @property
    def os(self) -> str:
        """The OS the machine boots, else the one assigned to it."""
        return self.get("OS") or self.get("AssignedOS")

    def stage_text(self) -> str:
        words = STAGE_WORDS.get(self.stage, self.stage)
        if self.stage in ("downloading", "seeding"):
            return f"{words} {self.get('Progress', 0.0) * 100:.0f} %"
        return words

    def search_text(self) -> str:
        return " ".join((self.name, self.mac, self.get("IPAddress"), self.os,
                         self.stage, self.stage_text())).lower()


class OSItem(DBusItem):
    """An OS of the daemon's library."""

    @property
    def name(self) -> str:
        return self.get("Name")
