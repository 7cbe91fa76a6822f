"""MAC addresses in the one form the daemon keys machines by: aa:bb:cc:dd:ee:ff.

Every way in (D-Bus calls, HTTP paths and queries, DHCP lease events, progress reports,
the saved assignments) normalises through `normalize_mac`, so one machine never shows up
under two spellings.
"""

import re

_MAC_RE = re.compile(r"([0-9a-f]{2})([:-]?)([0-9a-f]{2})((?:\2[0-9a-f]{2}){4})", re.IGNORECASE)


def normalize_mac(text: object) -> str:
    """aa:bb:cc:dd:ee:ff from any of aa:bb:.., AA-BB-.., aabbccddeeff; ValueError otherwise
    (anything that is not a string included: reports are parsed from JSON)."""
    if not isinstance(text, str) or _MAC_RE.fullmatch(text) is None:
        raise ValueError(
            f"{text!r} is not a MAC address; write it as six two-digit hex numbers, "
            "e.g. 52:54:00:12:34:56"
        )
    digits = re.sub(r"[:-]", "", text).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
