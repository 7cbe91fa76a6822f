"""boottorrent-gtk: the application, its actions, and its entry point."""

import sys
from pathlib import Path

import gi

gi.require_version("Gtk", "4.0")
gi.require_version("Adw", "1")

from gi.repository import Adw, Gdk, Gio, GLib, Gtk  # noqa: E402

from boottorrentgtk import APP_ID  # noqa: E402
from boottorrentgtk.bus import DaemonLink  # noqa: E402
from boottorrentgtk.window import MainWindow  # noqa: E402

STYLE = Path(__file__).with_name("style.css")


class Application(Adw.Application):
    def __init__(self) -> None:
        super().__init__(application_id=APP_ID)
        self.window: MainWindow | None = None
        self._action("assign", "(ss)", self._assign)
        self._action("unassign", "s", self._unassign)

    def _action(self, name: str, signature: str, handler) -> None:
        action = Gio.SimpleAction.new(name, GLib.VariantType(signature))
        action.connect("activate", lambda a, value: handler(value.unpack()))
        self.add_action(action)

    def do_activate(self) -> None:
        if self.window is None:
            Gtk.Window.set_default_icon_name(APP_ID)
            css = Gtk.CssProvider()
            css.load_from_path(str(STYLE))
            Gtk.StyleContext.add_provider_for_display(
                Gdk.Display.get_default(), css, Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
            try:
                link, bus_error = DaemonLink.system(), ""
            except GLib.Error as e:
                link, bus_error = None, (f"Cannot connect to the system bus: {e.message}. "
                                         "Is dbus running?")
            self.window = MainWindow(self, link, bus_error)
        self.window.present()

    def _assign(self, args: tuple[str, str]) -> None:
        mac, os = args
        self._call(f"Assigning {os} to {mac}", "AssignClient", GLib.Variant("(ss)", (mac, os)),
                   f"{mac} boots {os} from now on")

    def _unassign(self, mac: str) -> None:
        self._call(f"Unassigning {mac}", "UnassignClient", GLib.Variant("(s)", (mac,)),
                   f"{mac} gets the boot menu again")

    def _call(self, what: str, member: str, args: GLib.Variant, done: str) -> None:
        window = self.window
        if window is not None and window.link is not None:
            toast = window.toast
            window.link.call(what, member, args, on_reply=lambda reply: toast(done))


def main() -> int:
    # The name accessibility tools and the window manager know the program by.
    GLib.set_prgname("boottorrent-gtk")
    GLib.set_application_name("BootTorrent")
    return Application().run(sys.argv)
