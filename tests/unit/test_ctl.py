"""boottorrentctl is a thin client: what it imports, what it writes, how it reads the bus."""

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from boottorrentctl.bus import unwrap
from boottorrentctl.cli import cmd_init
from boottorrentctl.records import child_records, seed_records
from boottorrentd.bus.service import CHILD_KEYS, SEED_KEYS, _children, _seeding
from boottorrentd.config import default_config_text
from boottorrentd.session.children.transmission import TorrentStats
from boottorrentd.session.session import ChildStatus

REPO = Path(__file__).resolve().parents[2]


def test_the_cli_imports_of_the_daemon_only_its_api_and_the_bus_backend():
    probe = ("import sys, boottorrentctl.cli; "
             "print('\\n'.join(m for m in sys.modules if m.startswith('boottorrentd')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.split()
    assert set(loaded) <= {"boottorrentd", "boottorrentd.api", "boottorrentd.bus",
                           "boottorrentd.bus.backend"}


def test_init_writes_the_daemons_default_configuration_with_no_daemon_running(tmp_path,
                                                                              capsys):
    assert cmd_init(argparse.Namespace(dir=str(tmp_path / "proj"))) == 0
    assert (tmp_path / "proj/Boottorrent.yaml").read_text() == default_config_text()
    assert (tmp_path / "proj/oss").is_dir()
    assert "boottorrentctl import" in capsys.readouterr().out


def _manager(children: list[ChildStatus], seeding: list[TorrentStats],
             library: dict[str, str]) -> SimpleNamespace:
    entries = {name: SimpleNamespace(name=name, torrent=SimpleNamespace(infohash=h))
               for name, h in library.items()}
    session = SimpleNamespace(children=lambda: children, seeding=seeding)
    return SimpleNamespace(session=session, library=SimpleNamespace(entries=entries))


def test_children_go_on_the_bus_as_named_keys_and_come_back_as_the_same_records():
    manager = _manager([ChildStatus("dnsmasq", "running", 4242, 61.5, 2)], [], {})
    on_bus = _children(manager)
    assert [{k: v.signature for k, v in c.items()} for c in on_bus] == [CHILD_KEYS]
    assert child_records({"Children": unwrap(on_bus)}) == [
        {"name": "dnsmasq", "state": "running", "pid": 4242, "uptime_s": 61.5, "restarts": 2}]


def test_seeded_torrents_go_on_the_bus_named_by_their_library_os():
    h = "ab" * 20
    stats = TorrentStats(h, "torrent-name", "seeding", 1.0, 3, 123456, 10, "")
    on_bus = _seeding(_manager([], [stats], {"debian12": h}))
    assert [{k: v.signature for k, v in s.items()} for s in on_bus] == [SEED_KEYS]
    assert seed_records({"Seeding": unwrap(on_bus)}) == [
        {"name": "debian12", "infohash": h, "status": "seeding", "peers": 3,
         "uploaded_bytes": 123456}]


def test_no_session_means_no_children_and_nothing_seeded():
    manager = SimpleNamespace(session=None)
    assert _children(manager) == [] and _seeding(manager) == []
