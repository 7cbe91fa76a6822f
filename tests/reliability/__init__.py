"""What the reliability tests tried and what happened, as records RELIABILITY.md is made of.

A test calls `record(...)` once per fault or input class it tried; each record is a JSON
file in BOOTTORRENT_RESULTS_DIR (default build/reliability/). `python -m
tests.reliability` renders every record there as RELIABILITY.md's table.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = Path(os.environ.get("BOOTTORRENT_RESULTS_DIR", ROOT / "build" / "reliability"))


def record(area: str, case: str, tried: int, outcome: str, test: str,
           *, seed: int | None = None) -> None:
    """One row: in `area`, `case` was tried `tried` times and `outcome` happened (the
    test asserted it); `test` is the pytest node id that reproduces it, `seed` the
    fuzz seed when the inputs were generated."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{area}-{case}".lower()).strip("-")[:120]
    row = {"area": area, "case": case, "tried": tried, "outcome": outcome, "test": test,
           "seed": seed}
    (RESULTS / f"{slug}.json").write_text(json.dumps(row, indent=1) + "\n")


def current_test() -> str:
    """The running test's node id (pytest sets PYTEST_CURRENT_TEST)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
