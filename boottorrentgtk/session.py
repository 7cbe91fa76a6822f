"""The session page: the daemon's state and why, start and stop, the children with their
restarts, and what the session seeds."""

from collections.abc import Callable
from typing import Any

from gi.repository import Adw, GLib, Gtk

from boottorrentgtk.bus import DaemonLink

STATE_WORDS = {
    "stopped": "Stopped",
    "starting": "Starting",
    "running": "Running",
    "degraded": "Running, degraded",
    "stopping": "Stopping",
    "failed": "Failed",
}


def _since(uptime_usec: int) -> str:
    # The record says how long the child had run when it was sent; the time it started
    # stays right without reading the record again.
    started = GLib.DateTime.new_now_local().add_seconds(-uptime_usec / 1_000_000)
    return f"since {started.format('%H:%M:%S')}"


class RowGroup(Adw.PreferencesGroup):
    """A group whose rows are rebuilt from a list of records."""

    def __init__(self, title: str, empty: str, row: Callable[[dict[str, Any]], Adw.ActionRow]
                 ) -> None:
        super().__init__(title=title)
        self._row = row
        self._empty = empty
        self._rows: list[Gtk.Widget] = []
        self.show_records([])

    def show_records(self, records: list[dict[str, Any]]) -> None:
        for widget in self._rows:
            self.remove(widget)
        self._rows = [self._row(r) for r in records] or [Adw.ActionRow(title=self._empty)]
        for widget in self._rows:
            self.add(widget)


def _child_row(child: dict[str, Any]) -> Adw.ActionRow:
    restarts = child.get("restarts", 0)
    parts = [child.get("state", ""), f"pid {child.get('pid', 0)}",
             _since(child.get("uptime_usec", 0)),
             f"{restarts} restart" + ("" if restarts == 1 else "s")]
    return Adw.ActionRow(title=child.get("name", ""), subtitle=" · ".join(parts))


def _seed_row(seed: dict[str, Any]) -> Adw.ActionRow:
    parts = [seed.get("status", ""), f"{seed.get('peers', 0)} peers",
             f"{GLib.format_size(seed.get('uploaded_bytes', 0))} sent"]
    return Adw.ActionRow(title=seed.get("name", ""), subtitle=" · ".join(parts))


class SessionPage(Adw.PreferencesPage):
    def __init__(self, link: DaemonLink) -> None:
        super().__init__(title="Session", icon_name="network-server-symbolic")
        self.link = link

        state = Adw.PreferencesGroup(title="Boot session")
        self.state_row = Adw.ActionRow(title="State")
        self.start_button = Gtk.Button(label="Start session", valign=Gtk.Align.CENTER)
        self.start_button.add_css_class("suggested-action")
        self.start_button.connect("clicked", self._start)
        self.stop_button = Gtk.Button(label="Stop session", valign=Gtk.Align.CENTER)
        self.stop_button.add_css_class("destructive-action")
        self.stop_button.connect("clicked", self._stop)
        self.state_row.add_suffix(self.start_button)
        self.state_row.add_suffix(self.stop_button)
        state.add(self.state_row)
        self.network_row = Adw.ActionRow(title="Boot network")
        state.add(self.network_row)
        self.version_row = Adw.ActionRow(title="Daemon")
        state.add(self.version_row)
        self.add(state)

        self.children_group = RowGroup("Children", "No children: the session is stopped",
                                       _child_row)
        self.add(self.children_group)
        self.seeds_group = RowGroup("Seeding", "Nothing is seeded", _seed_row)
        self.add(self.seeds_group)

        link.connect("manager-changed", lambda link, names: self.refresh(names))
        self.refresh(None)

    def refresh(self, names: set[str] | None) -> None:
        m = self.link.manager
        state = m.get("State", "")
        words = STATE_WORDS.get(state, state) if self.link.present else "Daemon not running"
        reason = m.get("StateReason", "")
        self.state_row.set_subtitle(f"{words}: {reason}" if reason else words)
        self.start_button.set_sensitive(state in ("stopped", "failed") or not self.link.present)
        self.stop_button.set_sensitive(state in ("running", "degraded", "starting"))
        self.network_row.set_subtitle(
            f"{m.get('HostAddress', '')} on {m.get('Interface', '')}, HTTP port "
            f"{m.get('HTTPPort', '')}" if m else "")
        self.version_row.set_subtitle(
            f"boottorrentd {m.get('Version', '')}, configuration {m.get('ConfigFile', '')}"
            if m else "")
        if names is None or "Children" in names:
            self.children_group.show_records(m.get("Children", []))
        if names is None or "Seeding" in names:
            self.seeds_group.show_records(m.get("Seeding", []))

    def _start(self, button: Gtk.Button) -> None:
        self.link.call("Starting the session", "StartSession")

    def _stop(self, button: Gtk.Button) -> None:
        self.link.call("Stopping the session", "StopSession")
