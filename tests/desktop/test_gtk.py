"""boottorrent-gtk under Xvfb, on the real daemon and its private bus, driven through AT-SPI."""

import json
import os
import signal

import pytest

from boottorrentd.util.wait import wait_until
from tests.conftest import Daemon, make_os, world_readable_tmpdir
from tests.desktop import atspi
from tests.integration import test_session
from tests.integration.test_session import BootLan

pytestmark = pytest.mark.integration

boot_lan = test_session.boot_lan

# A dozen machines at every stage of a boot, as their reports say it.
MACHINES = [
    ("52:54:00:00:01:01", {"stage": "dhcp"}),
    ("52:54:00:00:01:02", {"stage": "menu"}),
    ("52:54:00:00:01:03", {"stage": "phase1", "os": "lab"}),
    ("52:54:00:00:01:04", {"stage": "downloading", "os": "lab", "progress": 0.12,
                           "down_rate": 3_100_000, "up_rate": 400_000, "peers": 3}),
    ("52:54:00:00:01:05", {"stage": "downloading", "os": "lab", "progress": 0.47,
                           "down_rate": 5_400_000, "up_rate": 2_200_000, "peers": 7}),
    ("52:54:00:00:01:06", {"stage": "downloading", "os": "lab", "progress": 0.81,
                           "down_rate": 4_800_000, "up_rate": 3_900_000, "peers": 9}),
    ("52:54:00:00:01:07", {"stage": "seeding", "os": "lab", "progress": 1.0,
                           "up_rate": 6_300_000, "peers": 8}),
    ("52:54:00:00:01:08", {"stage": "seeding", "os": "lab", "progress": 1.0,
                           "up_rate": 5_100_000, "peers": 6}),
    ("52:54:00:00:01:09", {"stage": "booting", "os": "lab", "progress": 1.0}),
    ("52:54:00:00:01:0a", {"stage": "booted", "os": "lab", "progress": 1.0}),
    ("52:54:00:00:01:0b", {"stage": "booted", "os": "lab", "progress": 1.0}),
    ("52:54:00:00:01:0c", {"stage": "failed", "os": "lab", "progress": 0.33,
                           "error": "piece 17 failed its hash check three times"}),
]


def report(lan: BootLan, client, source: str, mac: str, body: dict) -> None:
    """What phase-1 does: POST a progress report to the boot server, from `source`."""
    client.run("curl", "-sSf", "-o", "/dev/null", "--interface", source, "-H",
               "Content-Type: application/json", "--data-binary", json.dumps(body),
               f"http://{lan.server}/api/v1/clients/{mac}/events")


def label_with(text: str):
    return lambda name: text in name


def test_the_wall_shows_each_reported_machine_within_a_second_in_its_stage(
        boot_lan: BootLan, open_window):
    boot_lan.daemon.ctl("start")
    window = open_window(boot_lan.daemon.bus)
    atspi.wait_for(window.app, "label", "No machine has booted from this server yet.")
    client = boot_lan.client(1)
    for i, (mac, body) in enumerate(MACHINES):
        source = client.add_address(40 + i) if i else boot_lan.lan.address(21)
        report(boot_lan, client, source, mac, body)
        # Within a second of the report: the tile with the machine's MAC and address.
        wall = atspi.wait_for(window.app, "table", "Machines", timeout=1)
        tile_title = atspi.wait_for(wall, "label", mac, timeout=1)
        assert tile_title is not None
        atspi.wait_for(wall, "label", source, timeout=1)

    shown = atspi.labels(wall)
    for words in ("Got an address", "At the boot menu", "Loading phase 1", "Downloading 47 %",
                  "Seeding 100 %", "Starting the OS", "Booted", "Failed"):
        assert words in shown, f"no tile says {words!r}: {shown}"
    assert "piece 17 failed its hash check three times" in shown
    assert any("5.4 MB/s" in text and "7 peers" in text for text in shown), "\n".join(shown)

    # A new report moves a tile on, from the signal alone.
    report(boot_lan, client, boot_lan.lan.address(21), MACHINES[0][0],
           {"stage": "downloading", "os": "lab", "progress": 0.25})
    atspi.wait_for(wall, "label", "Downloading 25 %", timeout=1)
    shot = window.screenshot("wall.png")

    # The filter narrows the wall to what matches.
    atspi.type_into(atspi.wait_for(window.app, "entry", "Filter machines"), "failed")
    wait_until(lambda: atspi.find(wall, "label", MACHINES[3][0]) is None, timeout=10,
               what="the filter to hide the machines that did not fail")
    assert atspi.find(wall, "label", MACHINES[11][0]) is not None
    atspi.wait_for(window.app, "label", "1 of 12")
    assert shot.stat().st_size > 0


# A lab's worth of machines reporting as fast as one process can post: each one downloads
# (three reports) and then boots, except every tenth, which fails.
LAB_REPORTS = r"""
import json, sys, urllib.request
server, count = sys.argv[1], int(sys.argv[2])
def post(mac, body):
    request = urllib.request.Request(f"http://{server}/api/v1/clients/{mac}/events",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()
for step in (0.2, 0.6, 1.0):
    for i in range(count):
        post(f"52:54:00:10:{i // 256:02x}:{i % 256:02x}",
             {"stage": "downloading", "os": "lab", "progress": step, "peers": i % 9})
for i in range(count):
    post(f"52:54:00:10:{i // 256:02x}:{i % 256:02x}",
         {"stage": "failed", "error": f"disk {i} is gone"} if i % 10 == 0 else
         {"stage": "booted"})
"""


def test_the_wall_keeps_up_with_a_lab_of_two_hundred_machines(boot_lan: BootLan,
                                                              open_window):
    boot_lan.daemon.ctl("start")
    window = open_window(boot_lan.daemon.bus)
    client = boot_lan.client(1)
    client.run("python3", "-c", LAB_REPORTS, boot_lan.server, "200", timeout=300)
    atspi.wait_for(window.app, "label", "200 machines", timeout=30)
    window.screenshot("wall-200.png")
    search = atspi.wait_for(window.app, "entry", "Filter machines")
    atspi.type_into(search, "failed")
    atspi.wait_for(window.app, "label", "20 of 200", timeout=30)
    atspi.type_into(search, "52:54:00:10:00:c7")
    atspi.wait_for(window.app, "label", "1 of 200", timeout=30)
    wall = atspi.wait_for(window.app, "table", "Machines")
    # The last report of the last machine is what its tile shows.
    atspi.wait_for(wall, "label", "Booted")
    atspi.type_into(search, "52:54:00:10:00:be")  # machine 190, which failed
    atspi.wait_for(window.app, "label", "1 of 200", timeout=30)
    atspi.wait_for(wall, "label", "disk 190 is gone")
    window.screenshot("wall-200-filtered.png")


def manager_property(lan: BootLan, name: str) -> str:
    return lan.daemon.busctl("get-property", "org.boottorrent1", "/org/boottorrent1",
                             "org.boottorrent1.Manager", name).stdout.strip()


def page(window, title: str) -> None:
    atspi.click(atspi.wait_for(window.app, "page tab", title))


def test_start_and_stop_in_the_window_start_and_stop_the_daemons_session(
        boot_lan: BootLan, open_window):
    window = open_window(boot_lan.daemon.bus)
    page(window, "Session")
    atspi.wait_for(window.app, "label", "Stopped")
    atspi.click(atspi.wait_for(window.app, "push button", "Start session"))
    wait_until(lambda: manager_property(boot_lan, "State") == 's "running"', timeout=30,
               what="the daemon's session to run")
    # The window follows: the state, and the children with their restarts.
    atspi.wait_for(window.app, "label", "Running")
    atspi.wait_for(window.app, "label", "dnsmasq")
    atspi.wait_for(window.app, "label", label_with("0 restarts"))
    # What the session seeds comes with the seed engine's next statistics.
    atspi.wait_for(window.app, "label", label_with("peers ·"), timeout=30)
    window.screenshot("session.png")

    atspi.click(atspi.wait_for(window.app, "push button", "Stop session"))
    wait_until(lambda: manager_property(boot_lan, "State") == 's "stopped"', timeout=30,
               what="the daemon's session to stop")
    atspi.wait_for(window.app, "label", "Stopped")


def add_os_in_the_window(window, name: str, folder: str) -> None:
    page(window, "Library")
    atspi.click(atspi.wait_for(window.app, "push button", "Add OS…"))
    dialog = atspi.wait_for(window.app, "dialog", "Add an OS")
    atspi.type_into(atspi.wait_for(dialog, "text", label_with("Name")), name)
    atspi.type_into(atspi.wait_for(dialog, "text", "Folder"), folder)
    # GTK 4.8 names a dialog's response button by its label twice ("Add Add").
    atspi.click(atspi.wait_for(dialog, "push button", lambda name: name.startswith("Add")))


def test_add_os_in_the_window_adds_it_to_the_daemons_library(boot_lan: BootLan, open_window):
    window = open_window(boot_lan.daemon.bus)
    src = make_os(world_readable_tmpdir("bt-gtk-os-") / "debian12")
    add_os_in_the_window(window, "debian12", str(src))
    wait_until(lambda: "debian12" in boot_lan.daemon.ctl("list-os").stdout, timeout=30,
               what="the daemon to have debian12 in its library")
    row = atspi.wait_for(window.app, "label", label_with("(debian12)"))
    assert row.name == "Test OS (debian12)"
    atspi.wait_for(window.app, "label", label_with("kexec"))


def test_a_refused_call_shows_the_daemons_message_in_the_window(boot_lan: BootLan,
                                                                open_window, tmp_path):
    window = open_window(boot_lan.daemon.bus)
    add_os_in_the_window(window, "ghost", str(tmp_path / "no-such-folder"))
    message = atspi.wait_for(window.app, "label", label_with("Adding ghost failed:"))
    # The daemon's own words, as boottorrentctl prints them.
    said = boot_lan.daemon.ctl("add-os", "ghost", str(tmp_path / "no-such-folder"),
                               check=False).stderr.strip()
    assert said and said.split(": ", 1)[-1] in message.name
    window.screenshot("refused.png")


def test_the_window_says_when_the_daemon_is_gone_and_follows_it_back(boot_lan: BootLan,
                                                                    open_window):
    window = open_window(boot_lan.daemon.bus)
    page(window, "Library")
    atspi.wait_for(window.app, "label", label_with("(lab)"))
    boot_lan.daemon.stop()
    atspi.wait_for(window.app, "label", label_with("boottorrentd is not running"))
    assert atspi.find(window.app, "label", label_with("(lab)")) is None
    window.screenshot("daemon-gone.png")
    boot_lan.daemon.start()
    atspi.wait_for(window.app, "label", label_with("(lab)"))
    atspi.wait_for(window.app, "label", "boottorrentd is back")


def test_the_window_starts_a_stopped_daemon_through_bus_activation(daemon_dirs: Daemon,
                                                                   open_window):
    daemon = daemon_dirs
    daemon.bus.activates("org.boottorrent1", [
        daemon.program, "--config", str(daemon.config), "--state-dir", str(daemon.state_dir),
        "--runtime-dir", str(daemon.runtime_dir)])
    window = open_window(daemon.bus)
    try:
        page(window, "Session")
        # The window's first look at the name started the daemon: its state is shown.
        atspi.wait_for(window.app, "label", label_with(f"configuration {daemon.config}"),
                       timeout=30)
        atspi.wait_for(window.app, "label", "Stopped")
        assert atspi.find(window.app, "label", label_with("is not running")) is None
    finally:
        started = daemon.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                                "org.boottorrent1", check=False).stdout.split()
        if len(started) == 2:
            os.kill(int(started[1]), signal.SIGTERM)


def test_a_tiles_menu_assigns_an_os_to_its_machine_and_unassigns_it(boot_lan: BootLan,
                                                                    open_window):
    boot_lan.daemon.ctl("start")
    window = open_window(boot_lan.daemon.bus)
    client = boot_lan.client(1)
    mac = "52:54:00:00:02:01"
    report(boot_lan, client, boot_lan.lan.address(21), mac, {"stage": "menu"})
    wall = atspi.wait_for(window.app, "table", "Machines")
    menu = f"Assign an OS to {mac}"
    atspi.click(atspi.wait_for(wall, "push button", menu))
    atspi.click(atspi.wait_for(window.app, "menu item", "Assign OS"))
    atspi.click(atspi.wait_for(window.app, "menu item", "lab"))
    wait_until(lambda: assigned(boot_lan, mac) == "lab", timeout=30,
               what=f"the daemon to assign lab to {mac}")
    atspi.wait_for(wall, "label", "lab (assigned)")

    atspi.click(atspi.wait_for(wall, "push button", menu))
    atspi.click(atspi.wait_for(window.app, "menu item", "Unassign (show the menu)"))
    wait_until(lambda: assigned(boot_lan, mac) == "", timeout=30,
               what=f"the daemon to unassign {mac}")
    atspi.wait_for(wall, "label", "no OS yet")


def assigned(lan: BootLan, mac: str) -> str:
    clients = json.loads(lan.daemon.ctl("clients", "--json").stdout)
    return next(c["assigned_os"] for c in clients if c["mac"] == mac)
