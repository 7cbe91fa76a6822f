"""The channel between the daemon (session/children/libtorrent.py) and the libtorrent
engine (this package): JSON lines over a Unix socket, one request, then its response.

A request is {"op": <name>, ...arguments}; a response is {"ok": true, "result": ...} or
{"ok": false, "error": "<message for people>"}. Both sides import only this module of
the package: the daemon never imports libtorrent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

# Requests. PING answers {"libtorrent": version}; SET_TORRENTS takes {"torrents":
# [Seed...]} and answers null at once (checks run on; STATS tells how they end); STATS
# answers [SeedState...]; REANNOUNCE announces every seeding torrent now; HEALTH answers
# {"problem": what is wrong with the engine as a whole, "" when nothing}.
PING = "ping"
SET_TORRENTS = "set_torrents"
STATS = "stats"
REANNOUNCE = "reannounce"
HEALTH = "health"
OPS = (PING, SET_TORRENTS, STATS, REANNOUNCE, HEALTH)

# A stats answer for hundreds of torrents, or a torrent's metainfo (20 bytes a piece,
# base64), stays far below this.
MAX_LINE_BYTES = 16 << 20

# SeedState.status: the words transmission uses, so that both engines read alike.
CHECKING = "checking"
SEEDING = "seeding"
STOPPED = "stopped"


class ProtocolError(Exception):
    """A line that is not a message of this protocol."""


@dataclass(frozen=True)
class Seed:
    """A torrent to seed: its metainfo (announce URL included) and the folder that holds
    the folder named after the torrent."""

    infohash: str
    name: str
    metainfo_b64: str
    save_path: str

    @classmethod
    def of(cls, infohash: str, name: str, metainfo: bytes, save_path: str) -> Seed:
        return cls(infohash, name, base64.b64encode(metainfo).decode(), save_path)

    @property
    def metainfo(self) -> bytes:
        return base64.b64decode(self.metainfo_b64)


@dataclass(frozen=True)
class SeedState:
    """One torrent as the engine reports it. `bad_file`: the first file that does not
    match the torrent, relative to the save path ("" when none); `error`: the engine's
    own error for the torrent, such as a file it cannot read ("" when none)."""

    infohash: str
    name: str
    status: str  # CHECKING, SEEDING or STOPPED
    progress: float  # 0.0 to 1.0 verified
    peers: int
    uploaded_bytes: int
    rate_upload: int  # bytes/s
    bad_file: str
    error: str


def _from_dict(cls: type, data: Any) -> Any:
    names = {f.name for f in fields(cls)}
    if not isinstance(data, dict) or set(data) != names:
        raise ProtocolError(f"not a {cls.__name__}: {data!r:.200}")
    return cls(**data)


def seeds_from(data: Any) -> list[Seed]:
    if not isinstance(data, list):
        raise ProtocolError(f"torrents is not a list: {data!r:.200}")
    return [_from_dict(Seed, item) for item in data]


def states_from(data: Any) -> list[SeedState]:
    if not isinstance(data, list):
        raise ProtocolError(f"stats is not a list: {data!r:.200}")
    return [_from_dict(SeedState, item) for item in data]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, default=asdict, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    return message


def request(op: str, **arguments: Any) -> bytes:
    return encode({"op": op, **arguments})


def success(result: Any = None) -> bytes:
    return encode({"ok": True, "result": result})


def failure(error: str) -> bytes:
    return encode({"ok": False, "error": error})
