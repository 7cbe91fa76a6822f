"""Sizes and rates as the command line spells them, and as the log prints them."""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '64MiB', '4096k', '1G' -> bytes (binary units: M is MiB)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 64M or 512K")
    scale = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the size must be positive")
    return value


def parse_rate(text: str) -> int:
    """tc's spelling: '40mbit', '1gbit', '500kbit' -> bits per second (decimal units)."""
    m = _RATE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate; write e.g. 40mbit or 1gbit")
    scale = 1000 ** " kmg".index((m.group(2) or " ").lower())
    value = int(float(m.group(1)) * scale)
    if m.group(3) and m.group(3).lower() == "bps":
        value *= 8
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be positive")
    return value


def human_rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bit/s"


def human_size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
