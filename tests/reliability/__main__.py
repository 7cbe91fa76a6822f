"""Render the reliability tests' records as RELIABILITY.md.

    python -m tests.reliability [--results DIR] [--out RELIABILITY.md]

Run the tests first (`make reliability` runs them and this); every row comes from a
record a test wrote after its assertions held, so a row exists only for what passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.reliability import RESULTS, ROOT

HEADER = """# Reliability

What BootTorrent was put through, how many times, and what happened. Every row is a
record that a test wrote after its assertions held (`tests/reliability/`); this file is
rendered from them by `python -m tests.reliability` (`make reliability` runs the tests
and renders it). Inputs are generated from the seed shown: the same seed gives the same
inputs (`BOOTTORRENT_FUZZ_SEED=<seed> pytest <test>`); `make fuzz` runs more of them with
a random seed it prints.
"""


def render(rows: list[dict]) -> str:
    lines = [HEADER, "| area | fault or input class | tried | what happened | reproduce |",
             "| --- | --- | ---: | --- | --- |"]
    for row in sorted(rows, key=lambda r: (r["area"], r["case"])):
        seed = (f"BOOTTORRENT_FUZZ_SEED={row['seed']} " if row.get("seed") is not None
                else "")
        command = f"`{seed}pytest '{row['test']}'`"
        cells = [row["area"], row["case"], f"{row['tried']:,}", row["outcome"], command]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ROOT / "RELIABILITY.md")
    args = parser.parse_args(argv)
    rows = [json.loads(p.read_text()) for p in sorted(args.results.glob("*.json"))]
    if not rows:
        print(f"no records in {args.results}: run the reliability tests first "
              "(make reliability)", file=sys.stderr)
        return 1
    args.out.write_text(render(rows))
    print(f"wrote {args.out}: {len(rows)} rows from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
