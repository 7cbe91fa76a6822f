"""The phase-1 agent's download step, as every boottorrent client runs it, and its logs.

The command line is read from the agent's own text (boottorrentd/phase1/agent/init), so
that the benchmark runs exactly what a booting machine runs.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from importlib import resources
from pathlib import Path

# The agent ships as package data of boottorrentd.phase1 (pyproject.toml).
AGENT_DIR = Path(str(resources.files("boottorrentd.phase1").joinpath("agent")))

# Variables the agent's command line may use: what this runner defines, and boot.env's.
_RUNNER_VARS = {"RUN", "OS_DIR", "STALL"}


def _continued(lines: list[str], i: int) -> str:
    """The shell command that starts at lines[i], with its continuation lines."""
    cmd = [lines[i].strip()]
    while cmd[-1].endswith("\\"):
        i += 1
        cmd.append(lines[i].strip())
    return "\n    ".join(cmd)


def agent_download_command(init: Path = AGENT_DIR / "init") -> tuple[str, str]:
    """(the bt-download command line of the phase-1 agent, its default STALL)."""
    lines = init.read_text().splitlines()
    stall = next((m.group(1) for line in lines if (m := re.fullmatch(r"STALL=(\d+)", line))),
                 None)
    start = next((i for i, line in enumerate(lines)
                  if line.lstrip().startswith("bt-download ")), None)
    if start is None:
        raise RuntimeError(f"{init} has no bt-download command line")
    text = _continued(lines, start)
    if not text.endswith("&"):
        raise RuntimeError(f"{init}: the agent no longer runs bt-download in the background "
                           "as this benchmark expects; update agent_download_command()")
    text = text[:-1].rstrip()
    unknown = {v for v in re.findall(r"\$\{?([A-Za-z_]\w*)", text)
               if v not in _RUNNER_VARS and not v.startswith("BT_")}
    if unknown or stall is None:
        raise RuntimeError(f"{init}: the agent's bt-download line uses {sorted(unknown)} "
                           "(or STALL has no default); update the benchmark's runner")
    return text, stall


def client_runner(work: Path) -> Path:
    """The shell script each client runs in boottorrent mode (written into `work`)."""
    command, stall = agent_download_command()
    script = work / "bt-client.sh"
    script.write_text(f"""#!/bin/sh
# One benchmark client: the phase-1 agent's steps from the boot spec to the OS's files
# (boottorrentd/phase1/agent/init), with this host's curl instead of busybox wget.
# usage: bt-client.sh SERVER OS RUN OS_DIR [EXTRA_ARIA2C_OPTIONS [TORRENT_URL]]
set -f
export PATH={shlex.quote(str(AGENT_DIR))}:$PATH
SERVER=$1 OS=$2 RUN=$3 OS_DIR=$4 EXTRA=$5 TORRENT=$6
STALL={stall}
mkdir -p "$RUN" "$OS_DIR"
curl -sSf -m 30 --noproxy '*' -o "$RUN/boot.env" "http://$SERVER/os/$OS/boot.env" || exit 1
. "$RUN/boot.env"
# Experiments only (--aria2-extra): options after the daemon's, so that they win.
[ -n "$EXTRA" ] && BT_ARIA2_OPTS="$BT_ARIA2_OPTS $EXTRA"
# Experiments only (--web-seed): another torrent of the same OS (same infohash).
[ -n "$TORRENT" ] && BT_TORRENT_URL=$TORRENT
# The agent's own command line, from boottorrentd/phase1/agent/init:
{command}
""")
    script.chmod(0o755)
    return script


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


def read_status(path: Path) -> dict[str, str]:
    """bt-download's status file (BT_STATE, BT_ERROR, ...); empty before it writes one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(re.findall(r"^(BT_\w+)='([^']*)'$", text, re.MULTILINE))
