"""A library file changed after its torrent was made, and a seed that cannot take its
peer port: found before anything is served, shown on the OS's D-Bus object and in the
session's state (issue 14, integrity)."""

import json
import os
import shutil
import subprocess

import pytest

from boottorrentd import api
from boottorrentd.util.wait import wait_until
from tests.conftest import world_readable_tmpdir
from tests.integration import test_session
from tests.integration.test_session import BootLan, payload_os
from tests.reliability import current_test, record

pytestmark = pytest.mark.integration

boot_lan = test_session.boot_lan
MAC = "52:54:00:00:14:02"


def problem(b: BootLan, name: str) -> str:
    out = b.daemon.busctl("get-property", "org.boottorrent1", api.os_path(name),
                          api.OS_IFACE, "Problem", "--json=short").stdout
    return json.loads(out)["data"]


def http_get(b: BootLan, path: str) -> tuple[int, str]:
    """GET from the boot HTTP server: (status, body)."""
    out = subprocess.run(["ip", "netns", "exec", b.srv.name, "curl", "-s", "-o", "-", "-w",
                          "\n%{http_code}", f"http://{b.server}{path}"],
                         capture_output=True, timeout=30).stdout
    body, _, code = out.decode(errors="replace").rpartition("\n")
    return int(code), body


def add_second_os(b: BootLan) -> None:
    b.daemon.ctl("add-os", "spare", str(payload_os(world_readable_tmpdir("bt-os-") / "spare",
                                                  seed=b"spare")))


def test_a_file_truncated_after_its_torrent_was_made_is_marked_at_restart_and_never_served(
        boot_lan: BootLan):
    b = boot_lan
    add_second_os(b)
    b.daemon.stop()
    image = b.daemon.state_dir / "oss" / "lab" / "root.img"
    os.truncate(image, image.stat().st_size // 2)

    b.daemon.start()

    why = problem(b, "lab")
    assert f"{image} is {2 << 20} bytes, its torrent says {4 << 20}" in why
    assert "remove-os lab" in why
    assert problem(b, "spare") == ""
    refused = b.daemon.ctl("assign", MAC, "lab", check=False)
    assert refused.returncode != 0 and "OS lab is not served" in refused.stderr
    shown = b.daemon.ctl("show-os", "lab").stdout
    assert "problem:" in shown and "truncated" in shown

    b.daemon.ctl("start")
    status = b.status()
    assert status["state"] == "degraded"
    assert "OS lab is not seeded: its files do not match its torrent" in status["reason"]
    assert [s["name"] for s in status["seeding"] if s["status"] == "seeding"] == ["spare"]
    code, body = http_get(b, "/torrents/lab.torrent")
    assert code == 404 and "OS lab is not" in body
    assert http_get(b, "/torrents/spare.torrent")[0] == 200
    code, menu = http_get(b, f"/boot/{MAC}.ipxe")
    assert code == 200 and "spare boots" in menu and "lab" not in menu

    # Restored (a new mtime): the seed's full check clears it at the next session start.
    shutil.copyfile(b.src / "root.img", image)
    b.daemon.ctl("stop")
    b.daemon.ctl("start")
    assert problem(b, "lab") == ""
    assert b.status()["state"] == "running"
    assert http_get(b, "/torrents/lab.torrent")[0] == 200
    b.daemon.ctl("assign", MAC, "lab")
    record("integrity", "library file truncated after its torrent was made, daemon "
           "restarted", 1, "OS marked (D-Bus Problem) at load, not seeded, not in menus or "
           "torrents, assign refused, session degraded; served again once restored",
           current_test())


def test_a_file_changed_in_place_with_its_size_and_mtime_kept_is_refused_at_session_start(
        boot_lan: BootLan):
    b = boot_lan
    image = b.daemon.state_dir / "oss" / "lab" / "root.img"
    before = image.stat()
    with open(image, "r+b") as f:
        f.seek(before.st_size // 3)
        f.write(b"\0" * 4096)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    b.daemon.stop()
    b.daemon.start()
    assert problem(b, "lab") == "", "size and mtime alone cannot see this change"

    b.daemon.ctl("start")

    why = problem(b, "lab")
    assert "OS lab is not seeded: its files do not match its torrent" in why
    assert str(image) in why
    status = b.status()
    assert status["state"] == "degraded" and why in status["reason"]
    code, _ = http_get(b, "/torrents/lab.torrent")
    assert code == 404
    record("integrity", "library file changed in place, size and mtime kept", 1,
           "the seed's full check at session start refuses it: OS marked, not served, "
           "session degraded with the file named", current_test())


def test_a_seed_whose_peer_port_is_taken_degrades_the_session_until_it_is_free(
        boot_lan: BootLan):
    b = boot_lan
    port = 51420
    holder = subprocess.Popen(
        ["ip", "netns", "exec", b.srv.name, "python3", "-c",
         "import socket, sys, time\n"
         "s = socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
         "print('held', flush=True); time.sleep(600)", str(port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        b.daemon.ctl("start")
        wait_until(lambda: b.status()["state"] == "degraded", timeout=30,
                   what="the session to be degraded by the taken peer port")
        reason = b.status()["reason"]
        assert f"cannot listen on its peer port {b.lan.address(1)}:{port}" in reason
        assert "seeder.peer_port" in reason
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: b.status()["state"] == "running", timeout=60,
               what="the seed to take its port back and the session to run")
    assert "peer port" not in b.status()["reason"]
    record("integrity", "seed's peer port held by another program", 1,
           "session degraded naming the port and the fix; running again once the port "
           "is free (the seed takes it back)", current_test())

