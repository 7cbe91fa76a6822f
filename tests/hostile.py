"""Hostile input, seeded and reproducible: values a careless or malicious user sends.

Every generator draws from one `random.Random(seed)`: the same seed gives the same
inputs in the same order. CI uses the fixed seed and the counts of issue 14; `make fuzz`
sets BOOTTORRENT_FUZZ_SEED (random, printed) and BOOTTORRENT_FUZZ_SCALE (a multiplier).
"""

from __future__ import annotations

import os
import random
import string
from typing import Any

FIXED_SEED = 14
SEED = int(os.environ.get("BOOTTORRENT_FUZZ_SEED", FIXED_SEED))
SCALE = float(os.environ.get("BOOTTORRENT_FUZZ_SCALE", "1"))


def count(n: int) -> int:
    """`n` inputs in CI, `n` x BOOTTORRENT_FUZZ_SCALE under `make fuzz`."""
    return max(1, int(n * SCALE))


def rng(salt: str) -> random.Random:
    """A generator of its own per test: one test's draws do not shift another's."""
    return random.Random(f"{SEED}:{salt}")


# Strings that have broken servers: traversal, absolute paths, special files, encodings,
# option-like values, shell and format metacharacters, empties and giants.
NASTY_STRINGS = [
    "", " ", ".", "..", "../", "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "/etc/passwd",
    "/etc", "/proc/self/environ", "/dev/zero", "/dev/null", "/root/.ssh", "~", "~root",
    "a/../../b", "./x", "x/", "//", "\\..\\..\\windows", "%00", "\0", "a\0b", "\n", "\r\n",
    "-rf", "--help", "$(reboot)", "`id`", "; rm -rf /", "|cat", "{0}", "%s%s%s%n", "{{x}}",
    "null", "true", "0", "-1", "1e309", "NaN", "\u202e", "\ufeff", "é", "日本語", "😀",
    "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "A" * 256, "A" * 4097, "x" * 70000, "debian12", "DEBIAN12", "debian 12", "-debian",
    "52:54:00:12:34:56", "52-54-00-12-34-56", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
    "52:54:00:12:34:5g", "52:54:00:12:34", "525400123456", ":::::",
]
NASTY_INTS = [0, 1, -1, 2**31 - 1, 2**31, -2**31, 2**32, 2**63 - 1, 2**64 - 1, 10**100]


def text(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.5:
        return r.choice(NASTY_STRINGS)
    if roll < 0.8:
        alphabet = string.ascii_letters + string.digits + "-_./:%~ \t\\"
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, 40)))
    # Any code point but surrogates (D-Bus strings are UTF-8; surrogates are not).
    return "".join(chr(r.choice([r.randint(1, 0xD7FF), r.randint(0xE000, 0x10FFFF)]))
                   for _ in range(r.randint(1, 20)))


def integer(r: random.Random) -> int:
    return r.choice(NASTY_INTS) if r.random() < 0.6 else r.randint(-10**6, 10**6)


def scalar(r: random.Random) -> Any:
    """A YAML/JSON value of any type."""
    kind = r.randrange(7)
    if kind == 0:
        return text(r)
    if kind == 1:
        return integer(r)
    if kind == 2:
        return r.choice([True, False, None])
    if kind == 3:
        return r.choice([0.5, -0.0, 1e308, float("inf")])
    if kind == 4:
        return [text(r) for _ in range(r.randint(0, 3))]
    if kind == 5:
        return {text(r): text(r) for _ in range(r.randint(0, 3))}
    return r.choice([[], {}, [[]], {"": None}])
