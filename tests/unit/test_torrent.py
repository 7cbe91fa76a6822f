"""Deterministic BitTorrent v1 metainfo: boottorrentd.library.{bencode,payload,torrent}."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from boottorrentd.errors import InvalidArgument
from boottorrentd.library.bencode import bdecode, bencode
from boottorrentd.library.payload import TorrentFile, piece_length_for, scan_payload
from boottorrentd.library.torrent import TorrentInfo, make_torrent, read_torrent, with_announce

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Sizes chosen so that 128 KiB piece boundaries fall inside files, several small files
# share one piece, and one file is empty. Listed in the order the payload must have:
# sorted by UTF-8 bytes of the path components, whatever order they are created in.
PAYLOAD: list[tuple[tuple[str, ...], int]] = [
    ((".hidden",), 1000),
    (("boot", "initrd.img"), 700 * KIB + 13),
    (("boot", "vmlinuz"), 300 * KIB + 7),
    # After boot/*: components compare before "/" would ("-" sorts below "/").
    (("boot-splash.png",), 2000),
    (("empty",), 0),
    (("etc", "config.yaml"), 55),
    (("etc", "hostname"), 9),
    (("usr", "lib", "a.so"), 123_457),
    (("usr", "lib", "b.so"), 5),
    (("usr", "lib2"), 4000),
    (("z\u00e9ro",), 77),
]


def write_payload(root: Path, *, reverse: bool = False, seed: int = 1) -> Path:
    """Write PAYLOAD under root (plus a top-level config.yaml that is not payload)."""
    rng = random.Random(seed)
    contents = [(path, rng.randbytes(size)) for path, size in PAYLOAD]
    for path, data in reversed(contents) if reverse else contents:
        target = root.joinpath(*path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (root / "config.yaml").write_text("boot:\n  method: kexec\n")
    return root


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    return write_payload(tmp_path / "debian12")


def info_dict(metainfo: bytes) -> dict[bytes, object]:
    top = bdecode(metainfo)
    assert isinstance(top, dict)
    info = top[b"info"]
    assert isinstance(info, dict)
    return info


# --------------------------------------------------------------------------- bencode


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"i0e"),
        (42, b"i42e"),
        (-42, b"i-42e"),
        (2**64, b"i18446744073709551616e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        (b"\x00\xff", b"2:\x00\xff"),
        ("\u00e9", b"2:\xc3\xa9"),
        ([], b"le"),
        ([b"spam", 42, [b"x"]], b"l4:spami42el1:xee"),
        ({}, b"de"),
        ({"spam": [1, 2], "cow": "moo"}, b"d3:cow3:moo4:spamli1ei2eee"),
    ],
)
def test_bencode_matches_known_vectors(value: object, encoded: bytes) -> None:
    assert bencode(value) == encoded  # type: ignore[arg-type]


def test_bencode_sorts_dict_keys_as_raw_bytes_whatever_their_type() -> None:
    value = {"b": 1, "a": 2, b"B": 3, "\u00e9": 4, "z": 5}
    assert bencode(value) == b"d1:Bi3e1:ai2e1:bi1e1:zi5e2:\xc3\xa9i4ee"


def test_bencode_refuses_bool_and_unknown_types() -> None:
    for bad in (True, False, [1, True], {"x": False}, 1.5, None, {1: 2}):
        with pytest.raises(TypeError):
            bencode(bad)  # type: ignore[arg-type]


def test_bencode_refuses_keys_that_collide_once_encoded() -> None:
    with pytest.raises(ValueError, match="twice"):
        bencode({"a": 1, b"a": 2})


def test_bdecode_round_trips_what_bencode_makes() -> None:
    value = {
        b"announce": b"http://10.0.0.1:6969/announce",
        b"info": {b"length": 5, b"name": "n\u00e9".encode(), b"pieces": bytes(range(20))},
        b"list": [0, -1, 10**30, [], {}, [b""]],
    }
    assert bdecode(bencode(value)) == value
    assert bencode(bdecode(b"d1:ai1e1:bl1:xee")) == b"d1:ai1e1:bl1:xee"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"i1ee", "trailing"),
        (b"4:spamjunk", "trailing"),
        (b"lei0e", "trailing"),
        (b"i01e", "invalid integer"),
        (b"i-0e", "invalid integer"),
        (b"i00e", "invalid integer"),
        (b"ie", "invalid integer"),
        (b"i-e", "invalid integer"),
        (b"i 1e", "invalid integer"),
        (b"i1_0e", "invalid integer"),
        (b"i12", "unterminated"),
        (b"01:a", "invalid string length"),
        (b"5:spam", "past the end"),
        (b"4spam", "without ':'"),
        (b"l", "unterminated list"),
        (b"li1e", "unterminated list"),
        (b"d1:a", "truncated"),
        (b"d1:ai1e", "unterminated dict"),
        (b"di1ei2ee", "not a string"),
        (b"d1:ai1e1:ai2ee", "repeated"),
        (b"", "empty"),
        (b"x", "unexpected byte"),
        (b"l" * 10_000 + b"e" * 10_000, "nesting"),
    ],
)
def test_bdecode_rejects_malformed_input_with_a_clear_message(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        bdecode(data)


def test_bdecode_accepts_unsorted_keys_found_in_the_wild() -> None:
    assert bdecode(b"d1:bi1e1:ai2ee") == {b"a": 2, b"b": 1}


# --------------------------------------------------------------------------- payload


def test_payload_is_listed_in_byte_order_of_paths_with_hidden_files_and_without_config(
    payload: Path,
) -> None:
    files = scan_payload(payload)
    assert files == [TorrentFile(path, size) for path, size in PAYLOAD]


def test_top_level_config_yaml_is_excluded_but_one_in_a_subfolder_is_payload(
    payload: Path,
) -> None:
    paths = [f.path for f in scan_payload(payload)]
    assert ("config.yaml",) not in paths
    assert ("etc", "config.yaml") in paths

    everything = [f.path for f in scan_payload(payload, exclude=())]
    assert ("config.yaml",) in everything

    metainfo, info = make_torrent(payload, "debian12")
    assert ("config.yaml",) not in [f.path for f in info.files]
    assert b"boot:" not in metainfo  # config.yaml is metadata, its bytes are not hashed in


def test_empty_directories_do_not_appear(payload: Path) -> None:
    (payload / "var" / "empty" / "deeper").mkdir(parents=True)
    assert [f.path for f in scan_payload(payload)] == [path for path, _ in PAYLOAD]


def test_symlink_inside_the_folder_is_refused_with_the_fix(payload: Path) -> None:
    link = payload / "usr" / "lib" / "libc.so"
    link.symlink_to("a.so")
    with pytest.raises(InvalidArgument) as raised:
        scan_payload(payload)
    assert str(link) in str(raised.value)
    assert "replace the symlink by the file it points to" in str(raised.value)
    with pytest.raises(InvalidArgument):
        make_torrent(payload, "debian12")


def test_symlink_to_a_directory_is_refused_rather_than_followed(payload: Path) -> None:
    (payload / "lib").symlink_to("usr/lib", target_is_directory=True)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        scan_payload(payload)


def test_special_file_inside_the_folder_is_refused(payload: Path) -> None:
    fifo = payload / "etc" / "initctl"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="special file") as raised:
        scan_payload(payload)
    assert str(fifo) in str(raised.value)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no files"):
        scan_payload(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("only metadata\n")
    with pytest.raises(InvalidArgument, match="no files"):
        make_torrent(tmp_path, "os")


def test_folder_of_only_empty_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nothing").touch()
    with pytest.raises(InvalidArgument, match="empty"):
        make_torrent(tmp_path, "os")


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a directory"):
        scan_payload(tmp_path / "nope")


def test_name_must_be_a_plain_folder_name(payload: Path) -> None:
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(InvalidArgument, match="plain"):
            make_torrent(payload, bad)


# --------------------------------------------------------------------------- determinism


def test_same_files_give_same_infohash_whatever_mtime_or_folder(tmp_path: Path) -> None:
    first = write_payload(tmp_path / "one" / "debian12")
    # Created in the opposite order so directory listing order differs too.
    second = write_payload(tmp_path / "elsewhere" / "deep" / "other-name", reverse=True)
    for n, path in enumerate(sorted(second.rglob("*"))):
        os.utime(path, (1_000_000 + n, 2_000_000_000 - n))
    (second / "config.yaml").write_text("a different config is not payload\n")

    metainfo_one, info_one = make_torrent(first, "debian12")
    metainfo_two, info_two = make_torrent(second, "debian12")
    assert info_one.infohash == info_two.infohash
    assert metainfo_one == metainfo_two


def test_changing_one_byte_changes_the_infohash(tmp_path: Path) -> None:
    first = write_payload(tmp_path / "a")
    second = write_payload(tmp_path / "b")
    target = second / "usr" / "lib" / "a.so"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    assert make_torrent(first, "os")[1].infohash != make_torrent(second, "os")[1].infohash


def test_metainfo_holds_no_dates_flags_or_anything_machine_specific(payload: Path) -> None:
    metainfo, info = make_torrent(payload, "debian12")
    top = bdecode(metainfo)
    assert isinstance(top, dict)
    assert set(top) == {b"created by", b"info"}
    assert top[b"created by"] == b"boottorrent"
    assert set(info_dict(metainfo)) == {b"files", b"name", b"piece length", b"pieces"}
    assert metainfo == bencode(top)  # canonical: sorted keys, nothing extra
    assert re.fullmatch(r"[0-9a-f]{40}", info.infohash)
    assert info.infohash == hashlib.sha1(bencode(info_dict(metainfo))).hexdigest()


def test_a_single_file_still_makes_a_multi_file_torrent(tmp_path: Path) -> None:
    (tmp_path / "disk.img").write_bytes(b"x" * 1000)
    metainfo, info = make_torrent(tmp_path, "img")
    raw = info_dict(metainfo)
    assert b"length" not in raw
    assert raw[b"files"] == [{b"length": 1000, b"path": [b"disk.img"]}]
    assert info.files == (TorrentFile(("disk.img",), 1000),)


# --------------------------------------------------------------------------- pieces


def test_pieces_span_file_boundaries_like_an_independent_computation(payload: Path) -> None:
    metainfo, info = make_torrent(payload, "debian12")
    raw = info_dict(metainfo)
    piece_length = raw[b"piece length"]
    assert piece_length == info.piece_length == 128 * KIB

    stream = b"".join(payload.joinpath(*path).read_bytes() for path, _ in PAYLOAD)
    assert len(stream) == info.total_size == sum(size for _, size in PAYLOAD)
    expected = b"".join(
        hashlib.sha1(stream[start : start + piece_length]).digest()
        for start in range(0, len(stream), piece_length)
    )
    assert raw[b"pieces"] == expected
    assert len(expected) // 20 == 9  # the last piece is short

    # The test data really does put piece boundaries inside files.
    ends = {sum(size for _, size in PAYLOAD[: i + 1]) for i in range(len(PAYLOAD))}
    assert not ends & set(range(piece_length, len(stream), piece_length))


def test_progress_increases_after_each_piece_and_ends_at_total(payload: Path) -> None:
    calls: list[tuple[int, int]] = []
    _, info = make_torrent(
        payload, "debian12", progress=lambda done, total: calls.append((done, total))
    )
    total = info.total_size
    assert len(calls) == 9
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert done[:-1] == [128 * KIB * n for n in range(1, 9)]
    assert calls[-1] == (total, total)


def test_a_file_growing_while_hashed_is_reported(payload: Path) -> None:
    last = payload / "z\u00e9ro"

    def grow(done: int, total: int) -> None:
        with last.open("ab") as stream:
            stream.write(b"more")

    with pytest.raises(InvalidArgument, match="changed while it was being hashed") as raised:
        make_torrent(payload, "debian12", progress=grow)
    assert str(last) in str(raised.value)
    assert "try again when nothing writes to it" in str(raised.value)


def test_a_file_shrinking_while_hashed_is_reported(payload: Path) -> None:
    def shrink(done: int, total: int) -> None:
        (payload / "usr" / "lib2").write_bytes(b"")

    with pytest.raises(InvalidArgument, match="changed while it was being hashed"):
        make_torrent(payload, "debian12", progress=shrink)


def test_an_exception_from_progress_cancels_hashing(payload: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        make_torrent(payload, "debian12", progress=cancel)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0, 128 * KIB),
        (1, 128 * KIB),
        (1 * MIB, 128 * KIB),
        (2000 * 128 * KIB, 128 * KIB),
        (2000 * 128 * KIB + 1, 256 * KIB),
        (1 * GIB, 1 * MIB),
        (4 * GIB, 4 * MIB),
        (2000 * 16 * MIB, 16 * MIB),
        (100 * GIB, 16 * MIB),
        (10 * 1024 * GIB, 16 * MIB),
    ],
)
def test_piece_length_depends_on_total_size_only_and_obeys_the_rules(
    total: int, expected: int
) -> None:
    length = piece_length_for(total)
    assert length == expected
    assert length & (length - 1) == 0
    assert 128 * KIB <= length <= 16 * MIB
    pieces = -(-total // length)
    if length < 16 * MIB:
        assert pieces <= 2000
    if length > 128 * KIB:
        assert -(-total // (length // 2)) > 2000  # the smallest that fits


def test_piece_length_refuses_a_negative_size() -> None:
    with pytest.raises(ValueError):
        piece_length_for(-1)


# --------------------------------------------------------------------------- reading


def test_read_torrent_gives_back_what_make_torrent_described(payload: Path) -> None:
    metainfo, info = make_torrent(payload, "debian12")
    assert read_torrent(metainfo) == info
    assert isinstance(info, TorrentInfo)
    assert info.name == "debian12"


def test_read_torrent_supports_single_file_torrents() -> None:
    info = {
        b"length": 300 * KIB,
        b"name": b"disk.img",
        b"piece length": 256 * KIB,
        b"pieces": b"\x01" * 40,
    }
    parsed = read_torrent(bencode({b"info": info}))
    assert parsed.name == "disk.img"
    assert parsed.files == (TorrentFile((), 300 * KIB),)
    assert parsed.total_size == 300 * KIB
    assert parsed.infohash == hashlib.sha1(bencode(info)).hexdigest()


def test_read_torrent_hashes_the_info_bytes_as_written_not_a_re_encoding() -> None:
    # Unsorted keys: a re-encode would sort them and give a different hash.
    raw_info = b"d4:name1:x12:piece lengthi262144e6:lengthi3e6:pieces20:" + b"p" * 20 + b"e"
    metainfo = b"d8:announce3:url4:info" + raw_info + b"e"
    expected = hashlib.sha1(raw_info).hexdigest()
    assert expected != hashlib.sha1(bencode(bdecode(raw_info))).hexdigest()  # type: ignore[arg-type]
    assert read_torrent(metainfo).infohash == expected
    assert read_torrent(with_announce(metainfo, ["http://t/a"])).infohash == expected


def good_info() -> dict[bytes, object]:
    return {
        b"files": [{b"length": 10, b"path": [b"a", b"b"]}, {b"length": 5, b"path": [b"c"]}],
        b"name": b"os",
        b"piece length": 256 * KIB,
        b"pieces": b"\x00" * 20,
    }


def broken(**changes: object) -> bytes:
    info = good_info()
    for key, value in changes.items():
        raw_key = key.replace("_", " ").encode()
        if value is None:
            del info[raw_key]
        else:
            info[raw_key] = value
    return bencode({b"info": info})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"le", "not a bencoded dict"),
        (b"d3:fooi1ee", "no 'info'"),
        (b"d4:infoi1ee", "no 'info'"),
        (bencode({b"info": good_info()}) + b"x", "trailing"),
        (broken(name=None), "no 'name'"),
        (broken(name=b".."), "plain"),
        (broken(name=b"\xff"), "UTF-8"),
        (broken(piece_length=0), "positive"),
        (broken(piece_length=b"1"), "not an integer"),
        (broken(pieces=b"\x00" * 19), "multiple of 20"),
        (broken(pieces=b"\x00" * 40), "need 1"),
        (broken(files=None), "exactly one"),
        (broken(length=5), "exactly one"),
        (broken(files=[]), "non-empty"),
        (broken(files=[{b"length": -1, b"path": [b"a"]}]), "negative"),
        (broken(files=[{b"length": 1, b"path": []}]), "empty"),
        (broken(files=[{b"length": 1, b"path": [b"..", b"etc"]}]), "plain"),
        (broken(files=[{b"length": 1, b"path": [b"a/b"]}]), "plain"),
        (broken(files=[{b"length": 1, b"path": [1]}]), "not a string"),
        (broken(files=[{b"length": 1, b"path": [b"a"]}, {b"length": 1, b"path": [b"a"]}]), "twice"),
        (
            broken(files=[{b"length": 1, b"path": [b"a"]}, {b"length": 1, b"path": [b"a", b"b"]}]),
            "inside a file",
        ),
    ],
)
def test_read_torrent_rejects_malformed_metainfo_with_a_clear_message(
    data: bytes, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        read_torrent(data)


# --------------------------------------------------------------------------- trackers


def test_with_announce_sets_trackers_and_keeps_the_infohash(payload: Path) -> None:
    metainfo, info = make_torrent(payload, "debian12")
    urls = ["http://10.0.0.1:6969/announce", "udp://10.0.0.1:6969/announce"]
    announced = with_announce(metainfo, urls)

    assert read_torrent(announced) == info
    assert info_dict(announced) == info_dict(metainfo)
    top = bdecode(announced)
    assert isinstance(top, dict)
    assert top[b"announce"] == urls[0].encode()
    assert top[b"announce-list"] == [[url.encode()] for url in urls]
    assert top[b"created by"] == b"boottorrent"
    assert announced == bencode(top)

    replaced = with_announce(announced, ["http://other/announce"])
    top = bdecode(replaced)
    assert isinstance(top, dict)
    assert top[b"announce-list"] == [[b"http://other/announce"]]
    assert read_torrent(replaced).infohash == info.infohash

    assert with_announce(announced, []) == metainfo


def test_with_announce_refuses_a_bare_string(payload: Path) -> None:
    metainfo, _ = make_torrent(payload, "debian12")
    with pytest.raises(TypeError):
        with_announce(metainfo, "http://10.0.0.1/announce")


# --------------------------------------------------------------------------- interop

SIZE_UNITS = {
    "B": 1,
    "bytes": 1,
    "byte": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


def shown_size_matches(shown: str, unit: str, actual: int) -> bool:
    """transmission-show rounds sizes for people; accept anything within the rounding."""
    number = shown.replace(",", "")
    decimals = len(number.partition(".")[2])
    scale = SIZE_UNITS[unit]
    return abs(float(number) * scale - actual) <= 0.5 * 10**-decimals * scale + 1e-6


def test_transmission_show_agrees_on_infohash_files_and_sizes(
    payload: Path, tmp_path: Path
) -> None:
    metainfo, info = make_torrent(payload, "debian12")
    torrent = tmp_path / "debian12.torrent"
    torrent.write_bytes(with_announce(metainfo, ["http://10.0.0.1:6969/announce"]))

    result = subprocess.run(
        ["transmission-show", str(torrent)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    out = result.stdout
    shown_hash = re.search(r"^\s*Hash(?: v1)?:\s*([0-9a-fA-F]{40})\s*$", out, re.MULTILINE)
    assert shown_hash, out
    assert shown_hash.group(1).lower() == info.infohash
    assert "http://10.0.0.1:6969/announce" in out

    listing = out.split("FILES", 1)[1]
    shown = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(.+) \(([\d.,]+) (\w+)\)\s*$", listing, re.MULTILINE)
    }
    expected = {"/".join(("debian12", *path)): size for path, size in PAYLOAD}
    assert set(shown) == set(expected), out
    for path, size in expected.items():
        assert shown_size_matches(*shown[path], size), (path, shown[path], size)
