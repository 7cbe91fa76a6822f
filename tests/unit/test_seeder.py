"""The seed-engine seam: the factory behind seeder.engine, the libtorrent engine's
command line and channel, and the refusal a library change gets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from boottorrentd.config import BootSection, Config, SeederSection, SwarmSection
from boottorrentd.errors import InvalidArgument
from boottorrentd.ltseed import protocol
from boottorrentd.ltseed.__main__ import parse_args
from boottorrentd.session.children import transmission
from boottorrentd.session.children.libtorrent import LibtorrentSeeder
from boottorrentd.session.seeder import make_seeder
from boottorrentd.session.seeding import refusal


def config(**seeder: object) -> Config:
    return Config(boottorrent=BootSection(host_ip="10.0.0.1"), seeder=SeederSection(**seeder))


def test_libtorrent_is_the_default_engine(tmp_path: Path):
    seeder = make_seeder(Config(boottorrent=BootSection()), tmp_path, tmp_path / "oss",
                         announce_url=None, user=None)

    assert isinstance(seeder, LibtorrentSeeder)


def test_seeder_engine_libtorrent_makes_the_ltseed_child_as_the_given_user(tmp_path: Path):
    cfg = config(engine="libtorrent", peer_port=6000, upload_slots=20, upload_limit_kbps=500)
    seeder = make_seeder(cfg, tmp_path / "seeder", tmp_path / "oss",
                         announce_url="http://10.0.0.1:10001/announce", user="nobody")
    assert isinstance(seeder, LibtorrentSeeder)

    spec = seeder.prepare()

    assert spec.name == "ltseed"
    assert spec.ready is not None and spec.started is not None
    assert "--reuid" in " ".join(spec.argv) and spec.argv.index("--") < spec.argv.index("-m")
    command = spec.argv[spec.argv.index("--") + 1:]
    assert command[:3] == [sys.executable, "-m", "boottorrentd.ltseed"]
    control, settings = parse_args(command[3:])
    assert control == tmp_path / "seeder" / "control.sock"
    assert (settings.host, settings.port) == ("10.0.0.1", 6000)
    assert (settings.upload_slots, settings.upload_limit_kbps) == (20, 500)
    assert settings.peer_exchange is True and settings.local_discovery is False


def test_the_engine_follows_swarm_peer_exchange(tmp_path: Path):
    cfg = Config(boottorrent=BootSection(host_ip="10.0.0.1"),
                 seeder=SeederSection(engine="libtorrent"),
                 swarm=SwarmSection(peer_exchange=False))

    command = LibtorrentSeeder(cfg, tmp_path, tmp_path, announce_url=None).command()

    assert parse_args(command[3:])[1].peer_exchange is False


def test_ltseed_refuses_a_listen_address_without_a_port(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        parse_args(["--control", "/run/x.sock", "--listen", "10.0.0.1"])

    assert "HOST:PORT" in capsys.readouterr().err


def test_a_seed_crosses_the_channel_with_its_metainfo_intact():
    metainfo = bytes(range(256)) * 3
    seed = protocol.Seed.of("ab" * 20, "alpha", metainfo, "/var/lib/boottorrent/oss")

    message = protocol.decode(protocol.request(protocol.SET_TORRENTS, torrents=[seed]))

    assert message["op"] == protocol.SET_TORRENTS
    (back,) = protocol.seeds_from(message["torrents"])
    assert back == seed and back.metainfo == metainfo


def test_stats_cross_the_channel_as_one_line():
    state = protocol.SeedState("ab" * 20, "alpha", protocol.SEEDING, 1.0, 3, 10, 5, "", "")

    line = protocol.success([state])

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply = protocol.decode(line)
    assert reply["ok"] is True
    assert protocol.states_from(reply["result"]) == [state]


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n"])
def test_a_line_that_is_not_a_message_is_a_protocol_error(line: bytes):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_a_record_with_missing_or_unknown_fields_is_a_protocol_error():
    with pytest.raises(protocol.ProtocolError, match="SeedState"):
        protocol.states_from([{"infohash": "ab" * 20}])
    with pytest.raises(protocol.ProtocolError, match="Seed"):
        protocol.seeds_from([{"infohash": "ab" * 20, "name": "a", "metainfo_b64": "",
                              "save_path": "/", "extra": 1}])


def test_a_failure_carries_its_message():
    assert protocol.decode(protocol.failure("no such torrent")) == {
        "ok": False, "error": "no such torrent"}


def test_a_refusal_names_the_os_and_the_file_and_how_to_fix_it():
    why = refusal("alpha", Path("/oss/alpha/payload.bin"), 0.5, user=None)

    assert "OS alpha" in why and "/oss/alpha/payload.bin" in why
    assert "do not match" in why and "50% verified" in why
    assert "restore them, or remove the OS and add it again" in why


def test_a_refusal_with_nothing_verified_suspects_the_seeds_user():
    why = refusal("alpha", Path("/oss/alpha"), 0.0, user="boottorrent",
                  cause="Permission denied")

    assert "Permission denied" in why
    assert "boottorrent cannot read them" in why


def test_the_daemon_side_of_the_libtorrent_engine_never_imports_libtorrent():
    code = ("import sys, boottorrentd.daemon, boottorrentd.session.children.libtorrent; "
            "print(json.dumps(sorted(m for m in sys.modules if 'libtorrent' in m)))")
    out = subprocess.run([sys.executable, "-c", f"import json; {code}"], check=True,
                         capture_output=True, text=True).stdout

    assert json.loads(out) == ["boottorrentd.session.children.libtorrent"]


def test_transmission_chosen_but_not_installed_names_the_package_and_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Only suggested by the package: a machine may well not have it.
    monkeypatch.setattr(transmission, "program_path", lambda name: None)
    seeder = make_seeder(config(engine="transmission"), tmp_path / "seeder", tmp_path / "oss",
                         announce_url=None, user=None)

    with pytest.raises(InvalidArgument, match=r"seeder\.engine is transmission.*"
                       r"apt install transmission-daemon.*seeder\.engine: libtorrent"):
        seeder.prepare()
