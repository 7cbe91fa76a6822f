"""The daemon's state files, damaged on disk: each is reported, set aside, and the daemon
starts (issue 14, state on disk)."""

import json
from pathlib import Path

import pytest

from tests.conftest import Daemon, make_os
from tests.reliability import current_test, record

pytestmark = pytest.mark.integration

VALID = {
    "clients.json": json.dumps({"version": 1, "assignments": {"52:54:00:12:34:56": "x"}},
                               indent=2),
    "session.json": json.dumps({"active": False, "claim": {
        "interface": "bt0", "address": "10.77.0.1/24", "added_address": True,
        "set_up": True}}, indent=2),
}

DAMAGE = {
    "empty": lambda good: b"",
    "torn": lambda good: good[: len(good) // 2],
    "garbage": lambda good: b"\xff\xfe\x00 not what was written \x80" * 3,
}


# children.json (the children's PIDs, in the runtime folder) is read when a session starts:
# tests/unit/test_supervisor_state.py damages it.


def state_file(d: Daemon, kind: str) -> Path:
    return d.state_dir / kind


def good_content(kind: str) -> bytes:
    return VALID[kind].encode()


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("kind", VALID)
def test_a_damaged_state_file_is_reported_set_aside_and_the_daemon_starts(daemon_dirs, kind,
                                                                          damage):
    path = state_file(daemon_dirs, kind)
    path.parent.mkdir(parents=True)
    bad = DAMAGE[damage](good_content(kind))
    path.write_bytes(bad)

    daemon_dirs.start()

    assert daemon_dirs.ctl("status").returncode == 0
    [aside] = path.parent.glob(f"{kind}.corrupt-*")
    assert aside.read_bytes() == bad
    assert f"{path} is corrupt" in daemon_dirs.log()
    assert not path.exists()
    record("state on disk", f"{kind} {damage} at daemon start", 1,
           f"reported, set aside as {aside.name.split('-')[0]}-<time>, daemon started",
           current_test())


def test_a_state_file_the_daemon_wrote_is_read_back_whole(daemon_dirs):
    """The counterpart: the undamaged files are used, not set aside."""
    for kind in ("clients.json", "session.json"):
        path = state_file(daemon_dirs, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good_content(kind))

    daemon_dirs.start()

    assert "corrupt" not in daemon_dirs.log()
    assert not list(daemon_dirs.state_dir.glob("*.corrupt-*"))


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_torrent_is_set_aside_and_its_os_kept_but_not_served(daemon_dirs, tmp_path,
                                                                       damage):
    daemon_dirs.start()
    daemon_dirs.ctl("add-os", "good", str(make_os(tmp_path / "good")))
    daemon_dirs.ctl("add-os", "hurt", str(make_os(tmp_path / "hurt",
                                                  config="dispname: Hurt\nmethod: kexec\n"
                                                  "kernel: vmlinuz\ninitrd: initrd.img\n")))
    daemon_dirs.stop()
    torrent = daemon_dirs.state_dir / "torrents" / "hurt.torrent"
    bad = DAMAGE[damage](torrent.read_bytes())
    torrent.write_bytes(bad)

    daemon_dirs.start()

    listed = [os["name"] for os in json.loads(daemon_dirs.ctl("list-os", "--json").stdout)]
    assert listed == ["good"]
    [aside] = torrent.parent.glob("hurt.torrent.corrupt-*")
    assert aside.read_bytes() == bad
    log = daemon_dirs.log()
    assert f"{torrent} is corrupt" in log
    assert "OS hurt is not served" in log and "remove-os hurt" in log
    # The OS folder is the admin's data: kept, across a second restart too.
    daemon_dirs.stop()
    daemon_dirs.start()
    assert (daemon_dirs.state_dir / "oss" / "hurt" / "vmlinuz").exists()
    # The fix the message gives works.
    daemon_dirs.ctl("remove-os", "hurt")
    assert not list(torrent.parent.glob("hurt.torrent*"))
    daemon_dirs.ctl("add-os", "hurt", str(tmp_path / "hurt"))
    record("state on disk", f"library torrent {damage} at daemon start", 1,
           "reported, set aside, its OS folder kept and not served, daemon started; "
           "remove-os + add-os fixes it", current_test())
