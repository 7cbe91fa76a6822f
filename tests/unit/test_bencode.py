"""Bencoding helpers that keep encoded bytes as they are: boottorrentd.library.bencode."""

from __future__ import annotations

import pytest

from boottorrentd.library.bencode import Raw, bencode, raw_values


def test_raw_bytes_are_inserted_verbatim() -> None:
    # Unsorted keys stay unsorted: these bytes are not bencode's own output.
    assert bencode({"b": 1, "a": Raw(b"d1:zi1e1:ai2ee")}) == b"d1:ad1:zi1e1:ai2ee1:bi1ee"


def test_raw_values_keeps_each_value_as_it_was_encoded() -> None:
    assert raw_values(b"d1:ad1:zi1e1:ai2ee1:bli1eee") == {b"a": b"d1:zi1e1:ai2ee", b"b": b"li1ee"}


@pytest.mark.parametrize("data", [b"li1ee", b"d1:ai1ee junk", b"d1:a"])
def test_raw_values_refuses_anything_but_one_dict(data: bytes) -> None:
    with pytest.raises(ValueError, match="bdecode"):
        raw_values(data)
