"""Bencoding, the serialisation BitTorrent metainfo and tracker replies are written in.

Strict on input (hostile bytes get a ValueError naming the offset, never a crash) and
canonical on output (dict keys sorted by their raw bytes), because an infohash is the
SHA-1 of encoded bytes: the same value must always encode the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Raw", "bdecode", "bencode", "raw_values"]

# Deep enough for any real metainfo, shallow enough that hostile input cannot hit
# Python's recursion limit (which would surface as RecursionError, not ValueError).
_MAX_DEPTH = 256

_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_LENGTH = re.compile(rb"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Raw:
    """Bytes that are bencoded already, which bencode() inserts verbatim.

    Re-encoding a decoded value could change its bytes (a dict with unsorted keys, from a
    torrent made elsewhere), which matters where the bytes are hashed, as an info dict is.
    """

    data: bytes


_Bencodable = int | bytes | bytearray | str | Raw | list[Any] | tuple[Any, ...] | dict[Any, Any]


def bencode(value: _Bencodable) -> bytes:
    """Encode `value`; dict keys (str or bytes) are sorted by their raw bytes.

    Raises TypeError for anything that has no bencoding (floats, None, bool) and
    ValueError for a dict whose keys collide once encoded (e.g. "a" and b"a").
    """
    parts: list[bytes] = []
    _encode(value, parts)
    return b"".join(parts)


def _encode(value: object, out: list[bytes]) -> None:
    # bool is an int subclass; encoding True as i1e would silently hide a caller's bug.
    if isinstance(value, bool):
        raise TypeError("bencode: bool has no bencoding; pass 0 or 1 explicitly")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, Raw):
        out.append(value.data)
    elif isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        items: dict[bytes, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                raw_key = key.encode("utf-8")
            elif isinstance(key, bytes | bytearray):
                raw_key = bytes(key)
            else:
                raise TypeError(f"bencode: dict key {key!r} is not str or bytes")
            if raw_key in items:
                raise ValueError(f"bencode: dict key {raw_key!r} appears twice")
            items[raw_key] = item
        out.append(b"d")
        for raw_key in sorted(items):
            out.append(b"%d:" % len(raw_key))
            out.append(raw_key)
            _encode(items[raw_key], out)
        out.append(b"e")
    else:
        raise TypeError(f"bencode: {type(value).__name__} has no bencoding")


def bdecode(data: bytes) -> object:
    """Decode one bencoded value that must span all of `data`.

    Strings come back as bytes (metainfo mixes text and binary), dicts as
    dict[bytes, object]. Raises ValueError, naming the offset, on malformed input:
    trailing data, leading zeros, "-0", truncation, non-string or repeated dict keys.
    Unsorted dict keys are accepted, because real-world torrents carry them and the
    infohash is taken from the raw bytes anyway.
    """
    data = bytes(data)
    if not data:
        raise ValueError("bdecode: empty input")
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise ValueError(f"bdecode: trailing data at offset {end} ({len(data) - end} bytes)")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    """Decode the value starting at `pos`; return it and the offset just past it."""
    if pos >= len(data):
        raise ValueError(f"bdecode: truncated input at offset {pos}")
    lead = data[pos]
    if lead == ord("i"):
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise ValueError(f"bdecode: unterminated integer at offset {pos}")
        digits = data[pos + 1 : end]
        if not _INTEGER.fullmatch(digits) or digits == b"-0":
            raise ValueError(f"bdecode: invalid integer {digits[:32]!r} at offset {pos}")
        try:
            return int(digits), end + 1
        except ValueError:  # only reachable past sys.get_int_max_str_digits()
            raise ValueError(f"bdecode: integer too long at offset {pos}") from None
    if ord("0") <= lead <= ord("9"):
        return _decode_string(data, pos)
    if lead in (ord("l"), ord("d")):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"bdecode: nesting deeper than {_MAX_DEPTH} at offset {pos}")
        if lead == ord("l"):
            items: list[object] = []
            pos += 1
            while pos < len(data) and data[pos] != ord("e"):
                item, pos = _decode(data, pos, depth + 1)
                items.append(item)
            if pos >= len(data):
                raise ValueError("bdecode: unterminated list")
            return items, pos + 1
        mapping: dict[bytes, object] = {}
        pos += 1
        while pos < len(data) and data[pos] != ord("e"):
            if not ord("0") <= data[pos] <= ord("9"):
                raise ValueError(f"bdecode: dict key at offset {pos} is not a string")
            key_pos = pos
            key, pos = _decode_string(data, pos)
            if key in mapping:
                raise ValueError(f"bdecode: dict key {key!r} repeated at offset {key_pos}")
            mapping[key], pos = _decode(data, pos, depth + 1)
        if pos >= len(data):
            raise ValueError("bdecode: unterminated dict")
        return mapping, pos + 1
    raise ValueError(f"bdecode: unexpected byte {bytes([lead])!r} at offset {pos}")


def _decode_string(data: bytes, pos: int) -> tuple[bytes, int]:
    colon = data.find(b":", pos)
    if colon < 0:
        raise ValueError(f"bdecode: string length without ':' at offset {pos}")
    digits = data[pos:colon]
    # The digit cap keeps int() away from its own limit on huge digit strings.
    if not _LENGTH.fullmatch(digits) or len(digits) > 20:
        raise ValueError(f"bdecode: invalid string length {digits[:32]!r} at offset {pos}")
    start = colon + 1
    end = start + int(digits)
    if end > len(data):
        raise ValueError(f"bdecode: string at offset {pos} runs past the end of the input")
    return data[start:end], end



def raw_values(data: bytes) -> dict[bytes, bytes]:
    """The dict bencoded in `data`, each value kept as the exact bytes that encode it.

    Raises ValueError as bdecode() does, or when `data` holds something else than a dict.
    """
    data = bytes(data)
    if not isinstance(bdecode(data), dict):  # validates the whole input
        raise ValueError("bdecode: the input is not a dict")
    values: dict[bytes, bytes] = {}
    pos = 1
    while data[pos] != ord("e"):
        key, pos = _decode_string(data, pos)
        start = pos
        _, pos = _decode(data, pos, 1)
        values[key] = data[start:pos]
    return values
