"""What aria2c's logs say about a benchmark client: when its first and last pieces came.

The client itself runs the phase-1 agent's download step (boottorrentlab.devkit.agent).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

_ARIA2_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) "
_ARIA2_PIECE_DONE = re.compile(_ARIA2_STAMP + r"\[INFO\].* - we got new piece\.")


def aria2_log_time(log: Path, line_re: re.Pattern[str], *, last: bool = False) -> float | None:
    """When aria2c logged the first (or `last`) line matching `line_re`, in seconds since
    the epoch."""
    stamp = None
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = line_re.match(line)
                if m:
                    stamp = m.group(1)
                    if not last:
                        break
    except FileNotFoundError:
        pass
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() if stamp else None


def aria2_complete_time(log: Path) -> float | None:
    """When the client's last piece arrived and passed its hash check. (aria2c's own
    "Download complete" line comes only when it stops seeding and exits.)"""
    return aria2_log_time(log, _ARIA2_PIECE_DONE, last=True)


def aria2_first_piece_time(log: Path, host: str) -> float | None:
    """When the first block of piece data from `host` (the seed) reached this client."""
    return aria2_log_time(log, re.compile(
        _ARIA2_STAMP + rf"\[INFO\].* - From: {re.escape(host)}:\d+ piece index="))
