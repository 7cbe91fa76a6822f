"""The lab wall: a tile per machine, sorted and filtered, for a lab of hundreds.

A Gtk.GridView over the link's list of machines makes tiles only for what is on screen;
the filter and the sorter look at a machine again when the link replaces it in the list
(DaemonLink does that when its name, address, OS or stage changes).
"""

from collections.abc import Callable

from gi.repository import Gio, Gtk

from boottorrentgtk.items import STAGE_ORDER, Machine
from boottorrentgtk.tile import MachineTile

# The sort orders offered, as (label, key); ties go by name, then MAC.
SORTS: tuple[tuple[str, Callable[[Machine], tuple]], ...] = (
    ("Name", lambda m: (m.name.lower(), m.mac)),
    ("Stage", lambda m: (STAGE_ORDER.get(m.stage, len(STAGE_ORDER)), m.name.lower(), m.mac)),
    ("Address", lambda m: (tuple(int(p) for p in m.get("IPAddress").split(".") if p.isdigit()),
                           m.mac)),
    ("OS", lambda m: (m.os, m.name.lower(), m.mac)),
)


def _order(a: tuple, b: tuple) -> Gtk.Ordering:
    if a < b:
        return Gtk.Ordering.SMALLER
    return Gtk.Ordering.LARGER if a > b else Gtk.Ordering.EQUAL


class WallPage(Gtk.Box):
    def __init__(self, machines: Gio.ListModel, os_names: Callable[[], list[str]]) -> None:
        super().__init__(orientation=Gtk.Orientation.VERTICAL)
        self._key = SORTS[0][1]
        self._query = ""

        bar = Gtk.Box(spacing=6, margin_top=6, margin_bottom=6, margin_start=12,
                      margin_end=12)
        self.search = Gtk.SearchEntry(hexpand=True,
                                      placeholder_text="Filter by name, MAC, address, OS, stage")
        self.search.update_property([Gtk.AccessibleProperty.LABEL], ["Filter machines"])
        self.search.connect("search-changed", self._search_changed)
        bar.append(self.search)
        bar.append(Gtk.Label(label="Sort by"))
        self.sort = Gtk.DropDown.new_from_strings([label for label, _ in SORTS])
        self.sort.connect("notify::selected", self._sort_changed)
        bar.append(self.sort)
        self.count = Gtk.Label()
        self.count.add_css_class("dim-label")
        bar.append(self.count)
        self.append(bar)

        self.filter = Gtk.CustomFilter.new(self._matches)
        self.sorter = Gtk.CustomSorter.new(self._compare)
        self.filtered = Gtk.FilterListModel(model=machines, filter=self.filter)
        self.sorted = Gtk.SortListModel(model=self.filtered, sorter=self.sorter)
        self.sorted.connect("items-changed", lambda *a: self._count())
        machines.connect("items-changed", lambda *a: self._count())

        factory = Gtk.SignalListItemFactory()
        factory.connect("setup", lambda f, item: item.set_child(MachineTile(os_names)))
        factory.connect("bind", lambda f, item: item.get_child().bind(item.get_item()))
        factory.connect("unbind", lambda f, item: item.get_child().unbind())
        self.grid = Gtk.GridView(model=Gtk.NoSelection(model=self.sorted), factory=factory,
                                 max_columns=12, min_columns=1)
        self.grid.add_css_class("wall")
        self.grid.update_property([Gtk.AccessibleProperty.LABEL], ["Machines"])
        self._machines = machines
        scroller = Gtk.ScrolledWindow(vexpand=True, child=self.grid)
        self.empty = Gtk.Label(label="No machine has booted from this server yet.",
                               vexpand=True)
        self.empty.add_css_class("dim-label")
        self.stack = Gtk.Stack()
        self.stack.add_named(scroller, "grid")
        self.stack.add_named(self.empty, "empty")
        self.append(self.stack)
        self._count()

    def _matches(self, machine: Machine) -> bool:
        return all(word in machine.search_text() for word in self._query.split())

    def _compare(self, a: Machine, b: Machine, _data: object = None) -> Gtk.Ordering:
        return _order(self._key(a), self._key(b))

    def _search_changed(self, entry: Gtk.SearchEntry) -> None:
        self._query = entry.get_text().lower()
        self.filter.changed(Gtk.FilterChange.DIFFERENT)

    def _sort_changed(self, dropdown: Gtk.DropDown, _pspec: object) -> None:
        self._key = SORTS[dropdown.get_selected()][1]
        self.sorter.changed(Gtk.SorterChange.DIFFERENT)

    def _count(self) -> None:
        total = self._machines.get_n_items()
        shown = self.sorted.get_n_items()
        self.count.set_label(f"{shown} of {total}" if shown != total else
                             f"{total} machine" if total == 1 else f"{total} machines")
        self.stack.set_visible_child_name("grid" if shown else "empty")
        if total and not shown:
            self.empty.set_label("No machine matches the filter.")
        elif not total:
            self.empty.set_label("No machine has booted from this server yet.")
