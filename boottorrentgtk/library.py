"""The library page: the daemon's OSes with method, size and infohash; add one from a
folder (with the copying and hashing progress the daemon signals), remove one."""

from pathlib import Path

from gi.repository import Adw, Gio, GLib, Gtk

from boottorrentgtk.bus import DaemonLink
from boottorrentgtk.items import OSItem


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


class AddOSDialog(Adw.MessageDialog):
    """Asks for a name and a folder; `on_add(name, folder, link)` when the user says Add."""

    def __init__(self, parent: Gtk.Window, on_add) -> None:
        super().__init__(transient_for=parent, modal=True, heading="Add an OS",
                         body="The daemon copies the folder into its library (or links it) "
                              "and makes its torrent. The folder holds the OS's files and "
                              "its config.yaml.")
        self._on_add = on_add
        rows = Gtk.ListBox(selection_mode=Gtk.SelectionMode.NONE)
        rows.add_css_class("boxed-list")
        self.name = Adw.EntryRow(title="Name (a-z, 0-9, . _ -)")
        self.folder = Adw.EntryRow(title="Folder")
        choose = Gtk.Button(icon_name="folder-open-symbolic", valign=Gtk.Align.CENTER,
                            tooltip_text="Choose the folder")
        choose.update_property([Gtk.AccessibleProperty.LABEL], ["Choose the folder"])
        choose.add_css_class("flat")
        choose.connect("clicked", self._choose)
        self.folder.add_suffix(choose)
        self.link = Gtk.Switch(valign=Gtk.Align.CENTER)
        link_row = Adw.ActionRow(title="Link instead of copying",
                                 subtitle="The library then uses the folder where it is")
        link_row.add_suffix(self.link)
        link_row.set_activatable_widget(self.link)
        for row in (self.name, self.folder, link_row):
            rows.append(row)
        self.set_extra_child(rows)
        self.add_response("cancel", "Cancel")
        self.add_response("add", "Add")
        self.set_response_appearance("add", Adw.ResponseAppearance.SUGGESTED)
        self.set_default_response("add")
        self.connect("response", self._response)
        self._chooser: Gtk.FileChooserNative | None = None

    def _choose(self, button: Gtk.Button) -> None:
        # Gtk.FileChooserNative: GTK 4.8 (bookworm) has no Gtk.FileDialog yet; the portal
        # gives the desktop's own chooser where there is one.
        self._chooser = Gtk.FileChooserNative(
            title="Choose the OS folder", transient_for=self, modal=True,
            action=Gtk.FileChooserAction.SELECT_FOLDER)
        self._chooser.connect("response", self._chosen)
        self._chooser.show()

    def _chosen(self, chooser: Gtk.FileChooserNative, response: int) -> None:
        if response == Gtk.ResponseType.ACCEPT:
            path = chooser.get_file().get_path()
            self.folder.set_text(path)
            if not self.name.get_text():
                self.name.set_text(Path(path).name.lower())
        self._chooser = None

    def _response(self, dialog: Adw.MessageDialog, response: str) -> None:
        if response == "add":
            self._on_add(self.name.get_text().strip(), self.folder.get_text().strip(),
                         self.link.get_active())


class LibraryPage(Adw.PreferencesPage):
    def __init__(self, link: DaemonLink) -> None:
        super().__init__(title="Library", icon_name="drive-multidisk-symbolic")
        self.link = link
        self._adding: dict[str, tuple[Adw.ActionRow, Gtk.ProgressBar]] = {}

        group = Adw.PreferencesGroup(title="Operating systems",
                                     description="What the machines can boot")
        add = Gtk.Button(label="Add OS…", valign=Gtk.Align.CENTER)
        add.add_css_class("suggested-action")
        add.connect("clicked", self._ask_add)
        group.set_header_suffix(add)
        self.list = Gtk.ListBox(selection_mode=Gtk.SelectionMode.NONE)
        self.list.add_css_class("boxed-list")
        self.empty = Adw.ActionRow(title="The library is empty")
        self.list.set_placeholder(self.empty)
        self.list.bind_model(link.oses, self._row)
        group.add(self.list)
        self.add(group)

        self.progress_group = Adw.PreferencesGroup(title="Being added")
        self.progress_group.set_visible(False)
        self.add(self.progress_group)

        link.connect("os-progress", self._progress)
        link.connect("presence", lambda link, present: self.empty.set_title(
            "The library is empty" if present else "The daemon is not running"))
        link.oses.connect("items-changed", self._oses_changed)

    def _row(self, item: OSItem) -> Gtk.Widget:
        row = Adw.ActionRow()
        remove = Gtk.Button(icon_name="user-trash-symbolic", valign=Gtk.Align.CENTER,
                            tooltip_text=f"Remove {item.name}")
        remove.update_property([Gtk.AccessibleProperty.LABEL], [f"Remove {item.name}"])
        remove.add_css_class("flat")
        remove.connect("clicked", lambda b: self._ask_remove(item))
        row.add_suffix(remove)

        def show(*_args: object) -> None:
            name, shown = item.name, item.get("DisplayName")
            row.set_title(f"{shown} ({name})" if shown and shown != name else name)
            row.set_subtitle(" · ".join((
                item.get("Method"), GLib.format_size(item.get("SizeBytes", 0)),
                _files(item.get("FileCount", 0)), f"infohash {item.get('InfoHash')}",
                *(["linked"] if item.get("Linked", False) else []))))

        item.connect("changed", show)
        show()
        return row

    # --- adding --------------------------------------------------------------------------

    def _ask_add(self, button: Gtk.Button) -> None:
        AddOSDialog(self.get_root(), self.add_os).present()

    def add_os(self, name: str, folder: str, link: bool) -> None:
        options = {"link": GLib.Variant("b", True)} if link else {}
        self._progress_row(name).set_subtitle(f"from {folder}")
        self.link.call(f"Adding {name or 'an OS'}", "AddOS",
                       GLib.Variant("(ssa{sv})", (name, folder, options)),
                       on_reply=lambda reply: self._done(name),
                       on_error=lambda message: self._done(name))

    def _progress_row(self, name: str) -> Adw.ActionRow:
        if name not in self._adding:
            row = Adw.ActionRow(title=name or "(no name)", subtitle="waiting for the daemon")
            bar = Gtk.ProgressBar(valign=Gtk.Align.CENTER, show_text=True, hexpand=True)
            row.add_suffix(bar)
            self._adding[name] = (row, bar)
            self.progress_group.add(row)
            self.progress_group.set_visible(True)
        return self._adding[name][0]

    def _progress(self, link: DaemonLink, name: str, phase: str, done: int, total: int
                  ) -> None:
        row = self._progress_row(name)
        bar = self._adding[name][1]
        fraction = done / total if total else 1.0
        bar.set_fraction(fraction)
        bar.set_text(f"{phase} {fraction * 100:.0f} %")
        row.set_subtitle(f"{phase}: {GLib.format_size(done)} of {GLib.format_size(total)}")

    def _done(self, name: str) -> None:
        row, _bar = self._adding.pop(name, (None, None))
        if row is not None:
            self.progress_group.remove(row)
        self.progress_group.set_visible(bool(self._adding))

    def _oses_changed(self, model: Gio.ListModel, position: int, removed: int, added: int
                      ) -> None:
        # Adding ends when the OS is in the library, whoever asked for it (the CLI too).
        for i in range(position, position + added):
            self._done(model.get_item(i).name)

    # --- removing ------------------------------------------------------------------------

    def _ask_remove(self, item: OSItem) -> None:
        dialog = Adw.MessageDialog(
            transient_for=self.get_root(), modal=True, heading=f"Remove {item.name}?",
            body="The daemon deletes its copy of the OS and its torrent; a linked folder "
                 "stays where it is.")
        dialog.add_response("cancel", "Cancel")
        dialog.add_response("remove", "Remove")
        dialog.set_response_appearance("remove", Adw.ResponseAppearance.DESTRUCTIVE)

        def answered(dialog: Adw.MessageDialog, response: str) -> None:
            if response == "remove":
                self.link.call(f"Removing {item.name}", "RemoveOS",
                               GLib.Variant("(s)", (item.name,)))

        dialog.connect("response", answered)
        dialog.present()
