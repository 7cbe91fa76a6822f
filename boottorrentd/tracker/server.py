"""The tracker's HTTP face: announce (BEP 3, compact peers by BEP 23) and scrape (BEP 48).

One request per connection, answered with "Connection: close": announces come every few
seconds from each client, far too seldom for keep-alive to matter. A refusal is a
"failure reason" in a 200 reply, as BEP 3 says, so that clients show it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable

from boottorrentd.library.bencode import bencode
from boottorrentd.tracker.swarm import EVENTS, Announce, Swarms

log = logging.getLogger("boottorrentd.tracker")

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 10.0


class BadRequest(ValueError):
    """The request cannot be answered; the message goes back as the failure reason."""


def parse_query(query: str) -> dict[str, list[bytes]]:
    """A query string's values as bytes (an info_hash is 20 raw bytes, not text)."""
    out: dict[str, list[bytes]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        raw = urllib.parse.unquote_to_bytes(value.replace("+", " "))
        out.setdefault(urllib.parse.unquote(name), []).append(raw)
    return out


def _one(query: dict[str, list[bytes]], name: str, default: bytes | None = None) -> bytes:
    values = query.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"missing {name}")
        return default
    return values[0]


def _int(query: dict[str, list[bytes]], name: str, default: bytes | None = None) -> int:
    text = _one(query, name, default)
    if not text.isdigit():
        raise BadRequest(f"{name} must be a whole number, not {text[:20]!r}")
    return int(text)


def _infohash(value: bytes) -> bytes:
    if len(value) != 20:
        raise BadRequest(f"info_hash must be 20 bytes, not {len(value)}")
    return value


class TrackerServer:
    """Answers HTTP requests from the state in `swarms`; `interval`: the announce
    interval the replies ask for, in seconds."""

    def __init__(self, swarms: Swarms, interval: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.swarms = swarms
        self.interval = interval
        self.clock = clock

    def announce(self, query: dict[str, list[bytes]], ip: str) -> dict:
        event = _one(query, "event", b"").decode("ascii", "replace")
        if event not in EVENTS:
            raise BadRequest(f"unknown event {event!r}")
        numwant = _int(query, "numwant") if "numwant" in query else None
        port = _int(query, "port")
        if not 0 < port < 65536:
            raise BadRequest(f"port {port} is not a port")
        a = Announce(infohash=_infohash(_one(query, "info_hash")),
                     peer_id=_one(query, "peer_id"), ip=ip, port=port,
                     left=_int(query, "left", b"0"), event=event, numwant=numwant)
        try:
            peers, swarm = self.swarms.announce(a, self.clock())
        except KeyError:
            raise BadRequest("requested download is not authorized for use with this "
                             "tracker: it tracks only the boot library's torrents") from None
        complete, incomplete, _ = swarm.counts()
        reply: dict = {"interval": self.interval, "min interval": self.interval,
                       "complete": complete, "incomplete": incomplete}
        if _one(query, "compact", b"1") == b"0":
            reply["peers"] = [{"peer id": p.peer_id, "ip": p.ip, "port": p.port} for p in peers]
        else:
            reply["peers"] = b"".join(p.compact() for p in peers)
        return reply

    def scrape(self, query: dict[str, list[bytes]]) -> dict:
        hashes = [_infohash(h) for h in query.get("info_hash", [])]
        counts = self.swarms.scrape(hashes, self.clock())
        return {"files": {h: {"complete": c, "incomplete": i, "downloaded": d}
                          for h, (c, i, d) in counts.items()}}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            writer.close()
            return
        status, body = self.answer(head, writer.get_extra_info("peername"))
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def answer(self, head: bytes, peer: tuple | None) -> tuple[str, bytes]:
        """(status line, body) for one request head from `peer` (host, port)."""
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.rpartition(" ")[0] or rest
        path, _, query = target.partition("?")
        if method != "GET" or path not in ("/announce", "/scrape"):
            return "404 Not Found", b"this is a BitTorrent tracker: /announce and /scrape\n"
        try:
            parsed = parse_query(query)
            if path == "/scrape":
                reply = self.scrape(parsed)
            else:
                if peer is None:
                    raise BadRequest("no peer address")
                reply = self.announce(parsed, peer[0])
        except BadRequest as e:
            reply = {"failure reason": str(e)}
        return "200 OK", bencode(reply)
