"""The daemon's own tracker, without sockets: the swarm state (boottorrentd/tracker/swarm.py)
and the replies made from it (server.py)."""

import random
import urllib.parse

from boottorrentd.library.bencode import bdecode
from boottorrentd.tracker.__main__ import read_whitelist
from boottorrentd.tracker.server import TrackerServer, parse_query
from boottorrentd.tracker.swarm import Announce, Swarms, peer_ttl

LIBRARY = bytes(range(20))
STRANGER = bytes(range(1, 21))


def swarms(max_peers: int = 200, ttl: float = 45.0) -> Swarms:
    s = Swarms(max_peers=max_peers, peer_ttl=ttl, rng=random.Random(1))
    s.allow(frozenset({LIBRARY}))
    return s


def join(s: Swarms, n: int, now: float = 0.0, *, left: int = 1, event: str = "started",
         numwant: int | None = None) -> list:
    peers: list = []
    for i in range(n):
        peers, _ = s.announce(Announce(LIBRARY, b"peer%016d" % i, f"10.1.{i // 250}.{i % 250 + 1}",
                                       6881, left, event, numwant), now)
    return peers


def test_a_client_of_a_lab_of_250_learns_200_peers_in_one_announce():
    s = swarms()
    join(s, 249)

    peers = join_one(s, b"newcomer-0000000000", numwant=None)

    assert len(peers) == 200
    assert len({p.peer_id for p in peers}) == 200
    assert b"newcomer-0000000000" not in {p.peer_id for p in peers}


def join_one(s: Swarms, peer_id: bytes, *, numwant: int | None, left: int = 1) -> list:
    peers, _ = s.announce(Announce(LIBRARY, peer_id, "10.9.9.9", 6881, left, "started",
                                   numwant), 1.0)
    return peers


def test_aria2c_asking_for_50_peers_gets_the_whole_lab_and_a_probe_asking_for_0_none():
    s = swarms(max_peers=200)
    join(s, 300)

    assert len(join_one(s, b"a" * 20, numwant=50)) == 200  # what aria2c always sends
    assert len(join_one(s, b"b" * 20, numwant=1000)) == 200
    assert join_one(s, b"c" * 20, numwant=0) == []


def test_a_peer_silent_for_the_ttl_is_forgotten_and_a_stopped_one_at_once():
    s = swarms(ttl=45.0)
    join(s, 3, now=0.0)
    s.announce(Announce(LIBRARY, b"peer%016d" % 0, "10.1.0.1", 6881, 1, "stopped"), 1.0)

    peers, swarm = s.announce(Announce(LIBRARY, b"late" * 5, "10.2.0.1", 6881, 1), 10.0)
    assert len(peers) == 2
    peers, swarm = s.announce(Announce(LIBRARY, b"late" * 5, "10.2.0.1", 6881, 1), 50.0)
    assert peers == [] and len(swarm.peers) == 1


def test_a_seed_is_not_told_about_other_seeds():
    s = swarms()
    join(s, 2, left=0)
    join(s, 1)  # overwrites peer 0 as a downloader

    peers = join_one(s, b"seed" * 5, numwant=None, left=0)

    assert [p.peer_id for p in peers] == [b"peer%016d" % 0]


def test_only_the_library_torrents_are_tracked_and_allow_drops_the_others():
    s = swarms()
    join(s, 1)
    s.allow(frozenset({STRANGER}))

    assert s.swarms == {}
    assert s.scrape([], 0.0) == {STRANGER: (0, 0, 0)}


def get(server: TrackerServer, path: str, **params: object) -> dict:
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    status, body = server.answer(f"GET {path}?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
                                  ("10.5.0.7", 40000))
    assert status == "200 OK"
    reply = bdecode(body)
    assert isinstance(reply, dict)
    return reply


def test_an_announce_reply_has_compact_peers_the_interval_and_the_counts():
    server = TrackerServer(swarms(), interval=15, clock=lambda: 0.0)
    get(server, "/announce", info_hash=LIBRARY, peer_id=b"s" * 20, port=51420, left=0)

    reply = get(server, "/announce", info_hash=LIBRARY, peer_id=b"c" * 20, port=6881, left=9,
                compact=1, event="started")

    assert reply[b"interval"] == 15
    assert reply[b"peers"] == bytes([10, 5, 0, 7]) + (51420).to_bytes(2, "big")
    assert (reply[b"complete"], reply[b"incomplete"]) == (1, 1)


def test_a_torrent_off_the_whitelist_gets_a_failure_reason():
    server = TrackerServer(swarms(), interval=15)

    reply = get(server, "/announce", info_hash=STRANGER, peer_id=b"c" * 20, port=6881, left=1)

    assert b"not authorized" in reply[b"failure reason"]


def test_a_scrape_counts_seeds_downloaders_and_completions():
    server = TrackerServer(swarms(), interval=15, clock=lambda: 0.0)
    get(server, "/announce", info_hash=LIBRARY, peer_id=b"c" * 20, port=6881, left=0,
        event="completed")

    reply = get(server, "/scrape", info_hash=LIBRARY)

    assert reply[b"files"][LIBRARY] == {b"complete": 1, b"incomplete": 0, b"downloaded": 1}


def test_an_infohash_with_a_space_byte_reads_the_same_escaped_or_as_plus():
    raw = b"\x20" * 20
    assert parse_query("info_hash=" + "%20" * 20)["info_hash"] == [raw]
    assert parse_query("info_hash=" + "+" * 20)["info_hash"] == [raw]


def test_the_whitelist_file_skips_what_is_not_an_infohash(tmp_path, caplog):
    path = tmp_path / "whitelist"
    path.write_text(f"{LIBRARY.hex()}\nnonsense\n\n{STRANGER.hex().upper()}\n")

    assert read_whitelist(path) == {LIBRARY, STRANGER}
    assert "whitelist:2: 'nonsense' is not a hex SHA-1 infohash" in caplog.text


def test_a_seed_announcing_every_five_minutes_as_libtorrent_does_is_not_forgotten():
    # tracker.announce_interval 5 asks for 5 s; libtorrent waits 300 s all the same.
    s = swarms(ttl=peer_ttl(5, 3))
    s.announce(Announce(LIBRARY, b"seed" * 5, "10.1.0.1", 51420, 0, "started"), 0.0)

    peers = join_one(s, b"late" * 5, numwant=50)  # at 1 s
    later, _ = s.announce(Announce(LIBRARY, b"later" * 4, "10.2.0.2", 6881, 1), 299.0)

    assert [p.peer_id for p in peers] == [b"seed" * 5]
    assert b"seed" * 5 in {p.peer_id for p in later}
    assert peer_ttl(60, 20) == 1200.0
