"""The main window: the wall, the session and the library, with a bar that says when the
daemon is gone and one that shows the last refusal or error in the daemon's words."""

from gi.repository import Adw, GLib, Gtk

from boottorrentgtk.bus import DaemonLink
from boottorrentgtk.library import LibraryPage
from boottorrentgtk.session import SessionPage
from boottorrentgtk.wall import WallPage

DAEMON_GONE = ("boottorrentd is not running. Starting a session starts it (D-Bus "
               "activation), as does 'systemctl start boottorrentd'; this window follows it "
               "as soon as it is back.")


class MessageBar(Gtk.Revealer):
    """A strip across the window with a message; `closable` ones have a close button."""

    def __init__(self, css: str, closable: bool) -> None:
        super().__init__(transition_type=Gtk.RevealerTransitionType.SLIDE_DOWN)
        box = Gtk.Box(spacing=12)
        box.add_css_class("message-bar")
        box.add_css_class(css)
        self.label = Gtk.Label(wrap=True, xalign=0, hexpand=True, selectable=True)
        box.append(self.label)
        if closable:
            close = Gtk.Button(icon_name="window-close-symbolic", valign=Gtk.Align.CENTER,
                               tooltip_text="Dismiss")
            close.update_property([Gtk.AccessibleProperty.LABEL], ["Dismiss the message"])
            close.add_css_class("flat")
            close.connect("clicked", lambda b: self.set_reveal_child(False))
            box.append(close)
        self.set_child(box)

    def show(self, text: str) -> None:
        self.label.set_label(text)
        self.set_reveal_child(True)


class MainWindow(Adw.ApplicationWindow):
    def __init__(self, app: Adw.Application, link: DaemonLink | None, bus_error: str) -> None:
        super().__init__(application=app, title="BootTorrent", default_width=1100,
                         default_height=760)
        self.link = link
        self.toasts = Adw.ToastOverlay()
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
        self.stack = Adw.ViewStack(vexpand=True)
        title = Adw.ViewSwitcherTitle(stack=self.stack, title="BootTorrent")
        header = Adw.HeaderBar(title_widget=title)
        box.append(header)
        self.daemon_bar = MessageBar("warning", closable=False)
        self.error_bar = MessageBar("error", closable=True)
        box.append(self.daemon_bar)
        box.append(self.error_bar)
        box.append(self.stack)
        switcher = Adw.ViewSwitcherBar(stack=self.stack)
        title.bind_property("title-visible", switcher, "reveal", 0)
        box.append(switcher)
        self.toasts.set_child(box)
        self.set_content(self.toasts)

        if link is None:
            self.daemon_bar.show(bus_error)
            return
        self.wall = WallPage(link.clients, self.os_names)
        self.stack.add_titled_with_icon(self.wall, "wall", "Machines",
                                        "computer-symbolic")
        self.session = SessionPage(link)
        self.stack.add_titled_with_icon(self.session, "session", "Session",
                                        "network-server-symbolic")
        self.library = LibraryPage(link)
        self.stack.add_titled_with_icon(self.library, "library", "Library",
                                        "drive-multidisk-symbolic")
        link.connect("presence", self._presence)
        link.connect("call-failed", lambda link, what, message: self.error_bar.show(
            f"{what} failed: {message}"))
        self._gone = False

    def os_names(self) -> list[str]:
        assert self.link is not None
        return [self.link.oses.get_item(i).name for i in range(self.link.oses.get_n_items())]

    def _presence(self, link: DaemonLink, present: bool) -> None:
        if present:
            if self._gone:
                self.toast("boottorrentd is back")
            self.daemon_bar.set_reveal_child(False)
        else:
            self.daemon_bar.show(DAEMON_GONE)
        self._gone = not present

    def toast(self, text: str) -> None:
        self.toasts.add_toast(Adw.Toast(title=GLib.markup_escape_text(text)))
