"""One machine's tile on the wall: name, address, OS, stage in colour and words, progress,
rates and peers, the error of a failed boot, and a menu to assign an OS."""

from collections.abc import Callable

from gi.repository import Gio, GLib, Gtk, Pango

from boottorrentgtk.items import STAGE_WORDS, Machine, rate


def _label(css: str, **kw) -> Gtk.Label:
    label = Gtk.Label(xalign=0, ellipsize=Pango.EllipsizeMode.END, **kw)
    label.add_css_class(css)
    return label


class MachineTile(Gtk.Box):
    """Shows whichever Machine it is bound to (the wall's GridView recycles tiles)."""

    def __init__(self, os_names: Callable[[], list[str]]) -> None:
        super().__init__(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        self.add_css_class("card")
        self.add_css_class("machine-tile")
        self._os_names = os_names
        self.machine: Machine | None = None
        self._handler = 0
        self._stage_class = ""

        top = Gtk.Box(spacing=6)
        names = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, hexpand=True)
        self.title = _label("heading")
        self.subtitle = _label("dim-label")
        names.append(self.title)
        names.append(self.subtitle)
        top.append(names)
        self.menu = Gtk.MenuButton(icon_name="view-more-symbolic", valign=Gtk.Align.START,
                                   tooltip_text="Assign an OS")
        self.menu.add_css_class("flat")
        self.menu.set_create_popup_func(self._fill_menu)
        top.append(self.menu)
        self.append(top)

        self.stage = _label("stage-label")
        self.os = _label("caption")
        self.progress = Gtk.ProgressBar()
        self.rates = _label("caption")
        self.error = Gtk.Label(xalign=0, wrap=True, lines=3, ellipsize=Pango.EllipsizeMode.END)
        self.error.add_css_class("error")
        self.error.add_css_class("caption")
        for widget in (self.stage, self.os, self.progress, self.rates, self.error):
            self.append(widget)

    def bind(self, machine: Machine) -> None:
        self.machine = machine
        self._handler = machine.connect("changed", lambda m, names: self.refresh())
        self.refresh()

    def unbind(self) -> None:
        if self.machine is not None:
            self.machine.disconnect(self._handler)
        self.machine = None

    def refresh(self) -> None:
        m = self.machine
        if m is None:
            return
        self.title.set_label(m.name)
        self.menu.update_property([Gtk.AccessibleProperty.LABEL], [f"Assign an OS to {m.mac}"])
        ip = m.get("IPAddress") or "no address"
        self.subtitle.set_label(f"{m.mac} · {ip}" if m.get("Hostname") else ip)
        stage = m.stage if m.stage in STAGE_WORDS else ""
        if self._stage_class:
            self.remove_css_class(self._stage_class)
        self._stage_class = f"stage-{stage or 'seen'}"
        self.add_css_class(self._stage_class)
        self.stage.set_label(m.stage_text())
        booting, assigned = m.get("OS"), m.get("AssignedOS")
        if not assigned:
            self.os.set_label(booting or "no OS yet")
        elif booting and booting != assigned:
            self.os.set_label(f"{booting} (assigned {assigned})")
        else:
            self.os.set_label(f"{assigned} (assigned)")
        self.progress.set_fraction(m.get("Progress", 0.0))
        self.progress.set_visible(m.stage in ("downloading", "seeding", "booting", "booted"))
        peers = m.get("Peers", 0)
        self.rates.set_label(f"↓ {rate(m.get('DownloadRate', 0))}  ↑ {rate(m.get('UploadRate', 0))}"
                             f"  · {peers} {'peer' if peers == 1 else 'peers'}")
        error = m.get("Error")
        self.error.set_label(error)
        self.error.set_visible(bool(error))
        self.update_property([Gtk.AccessibleProperty.DESCRIPTION],
                             [f"{m.name}: {m.stage_text()}"])

    def _fill_menu(self, button: Gtk.MenuButton) -> None:
        m = self.machine
        if m is None:
            return
        mac = GLib.Variant("s", m.mac)
        menu = Gio.Menu()
        assign = Gio.Menu()
        for name in self._os_names():
            item = Gio.MenuItem.new(name, None)
            item.set_action_and_target_value("app.assign", GLib.Variant("(ss)", (m.mac, name)))
            assign.append_item(item)
        menu.append_submenu("Assign OS", assign)
        unassign = Gio.MenuItem.new("Unassign (show the menu)", None)
        unassign.set_action_and_target_value("app.unassign", mac)
        menu.append_item(unassign)
        button.set_menu_model(menu)
