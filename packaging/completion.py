#!/usr/bin/env python3
"""Generate boottorrentctl's bash completion from its argument parser, with shtab.

    packaging/completion.py > boottorrentctl

shtab (python3-shtab) turns `boottorrentctl.cli.build_parser()` into the script: commands,
options, option choices and which options take a value. What a positional argument
completes to is decided here by its name: DIR completes folders; NAME (except for add-os,
which invents one) and OS complete the names in the daemon's library (`boottorrentctl
list-os`). debian/rules runs this at build time; the file goes to
/usr/share/bash-completion/completions/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import shtab

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from boottorrentctl.cli import build_parser  # noqa: E402

OS_NAMES = "_boottorrentctl_os_names"

# shtab 1.5.5 (Debian 12's) completes only the first of a list of choices, so only the
# first command ("status"); 1.5.6 fixed it (shtab commit cb81d71), Debian 13 has newer.
SHTAB_FIXED = (1, 5, 6)

# Positionals that name an OS already in the library, by (command, dest); "*" is any command.
OS_NAME_ARGS = {("*", "os"), ("*", "name")}
NEW_NAME_ARGS = {("add-os", "name")}
DIR_ARGS = {("*", "dir")}

PREAMBLE = f"""\
# The library's OS names that start with $1: the first column of list-os, without its header.
{OS_NAMES}() {{
  compgen -W "$(boottorrentctl list-os 2>/dev/null | awk 'NR > 1 && NF {{ print $1 }}')" -- "$1"
}}

# Under the name bash-completion gives a command's completion function.
_boottorrentctl() {{
  _shtab_boottorrentctl "$@"
}}
"""


def _matches(args: set[tuple[str, str]], command: str, dest: str) -> bool:
    return (command, dest) in args or ("*", dest) in args


def _complete_positionals(parser: argparse.ArgumentParser) -> None:
    """Tell shtab what each command's positional arguments complete to."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for command, sub in action.choices.items():
            for arg in sub._actions:
                if arg.option_strings or _matches(NEW_NAME_ARGS, command, arg.dest):
                    continue
                if _matches(DIR_ARGS, command, arg.dest):
                    arg.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
                elif _matches(OS_NAME_ARGS, command, arg.dest):
                    arg.complete = {"bash": OS_NAMES}  # type: ignore[attr-defined]


def _check_shtab() -> None:
    version = tuple(int(p) for p in shtab.__version__.split(".")[:3] if p.isdigit())
    if version < SHTAB_FIXED:
        sys.exit(f"completion.py: shtab {shtab.__version__} would complete only the first "
                 f"command; build with shtab >= {'.'.join(map(str, SHTAB_FIXED))} (Debian 13's "
                 "python3-shtab, or pip install 'shtab>=1.5.6')")


def render() -> str:
    _check_shtab()
    parser = build_parser()
    _complete_positionals(parser)
    return shtab.complete(parser, shell="bash", preamble=PREAMBLE) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
