"""The desktop tool as a person's assistive technology sees it, through AT-SPI (pyatspi).

pyatspi connects to the accessibility bus of the session bus in DBUS_SESSION_BUS_ADDRESS
the first time it is used: import this module's functions only once a Desktop runs and
that variable names its session bus.
"""

from collections.abc import Callable, Iterator
from typing import Any

from gi.repository import GLib

from boottorrentd.util.wait import wait_until

Node = Any  # a pyatspi Accessible


def _pyatspi() -> Any:
    import pyatspi

    return pyatspi


def application(pid: int, timeout: float = 30) -> Node:
    """The accessible application of process `pid`, once it has a window."""

    def found() -> Node | None:
        desktop = _pyatspi().Registry.getDesktop(0)
        for app in desktop:
            if app is not None and app.get_process_id() == pid and app.childCount:
                return app
        return None

    return wait_until(found, timeout=timeout, what=f"process {pid} on the accessibility bus",
                      interval=0.1)


def visible(node: Node) -> bool:
    return node.getState().contains(_pyatspi().STATE_VISIBLE)


def walk(node: Node) -> Iterator[Node]:
    """`node` and its visible descendants, depth first (GTK 4 marks only windows "showing")."""
    yield node
    try:
        children = list(node)
    except (GLib.Error, ValueError):
        # Gone while we looked (a tile the wall just dropped): AT-SPI says so with an
        # error, or with a child count of -1, which list() refuses with ValueError.
        return
    for child in children:
        try:
            if child is None or not visible(child):
                continue
        except GLib.Error:
            continue
        yield from walk(child)


def _role_and_name(node: Node) -> tuple[str, str] | None:
    """The node's role and name, or None when it went between the walk and the read (a
    tile the filter just hid): AT-SPI then says it has no such interface."""
    try:
        return node.getRoleName(), node.name
    except GLib.Error:
        return None


def find(root: Node, role: str, name: str | Callable[[str], bool] | None = None) -> Node | None:
    """The first visible node under `root` with that role and name (or name test)."""
    for node in walk(root):
        read = _role_and_name(node)
        if read is None or read[0] != role:
            continue
        if name is None or (name(read[1]) if callable(name) else read[1] == name):
            return node
    return None


def wait_for(root: Node, role: str, name: str | Callable[[str], bool] | None = None, *,
             timeout: float = 10) -> Node:
    return wait_until(lambda: find(root, role, name), timeout=timeout,
                      what=f"a {role} {name if isinstance(name, str) else ''!r} in the window",
                      interval=0.05)


def labels(root: Node) -> list[str]:
    """The texts of the labels under `root`; GLib's sizes ("5.4\u00a0MB") with plain spaces."""
    read = [_role_and_name(n) for n in walk(root)]
    return [r[1].replace("\u00a0", " ") for r in read if r is not None and r[0] == "label"]


# Atspi's interfaces directly: pyatspi's query*() helpers warn that they are deprecated.


def click(node: Node) -> None:
    # A composite widget (Gtk.MenuButton) has no action itself; its inner button does.
    node = next((n for n in walk(node) if n.get_n_actions()), node)
    if not node.do_action(0):
        raise AssertionError(f"the {node.getRoleName()} {node.name!r} did not take the click")


def type_into(node: Node, text: str) -> None:
    if not node.set_text_contents(text):
        raise AssertionError(f"the {node.getRoleName()} {node.name!r} refused the text {text!r}")
