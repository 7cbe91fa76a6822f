"""Experiment (--web-seed): the daemon's torrent with a BEP 19 url-list added.

Only the top-level dictionary is rewritten; every other value is kept byte for byte, so
the info dictionary (and the infohash) cannot change.
"""

from __future__ import annotations


def _bskip(data: bytes, i: int) -> int:
    """The index just past the bencoded value that starts at data[i]."""
    c = data[i:i + 1]
    if c == b"i":
        return data.index(b"e", i) + 1
    if c in (b"l", b"d"):
        i += 1
        while data[i:i + 1] != b"e":
            i = _bskip(data, i)
        return i + 1
    colon = data.index(b":", i)
    return colon + 1 + int(data[i:colon])


def _bstring(value: bytes) -> bytes:
    return str(len(value)).encode() + b":" + value


def with_url_list(torrent: bytes, url: str) -> bytes:
    """`torrent` with a BEP 19 url-list to `url`; the infohash stays the same."""
    if torrent[:1] != b"d":
        raise ValueError("not a torrent: the metainfo is not a dictionary")
    items: dict[bytes, bytes] = {}
    i = 1
    while torrent[i:i + 1] != b"e":
        colon = torrent.index(b":", i)
        key_end = colon + 1 + int(torrent[i:colon])
        key = torrent[colon + 1:key_end]
        end = _bskip(torrent, key_end)
        items[key] = torrent[key_end:end]
        i = end
    items[b"url-list"] = b"l" + _bstring(url.encode()) + b"e"
    return b"d" + b"".join(_bstring(k) + items[k] for k in sorted(items)) + b"e"
