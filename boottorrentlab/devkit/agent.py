"""The phase-1 agent's download step, as every boottorrent client runs it, on a host.

The command line is read from the agent's own text (boottorrentd/phase1/agent/init), so
that the benchmark and the lab simulator run exactly what a booting machine runs.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path

# The agent ships as package data of boottorrentd.phase1 (pyproject.toml).
AGENT_DIR = Path(str(resources.files("boottorrentd.phase1").joinpath("agent")))

# Variables the agent's command line may use: what this runner defines, and boot.env's.
_RUNNER_VARS = {"RUN", "OS_DIR", "STALL", "seed_time", "from_disk"}


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
                           "as the devkit expects; update agent_download_command()")
    text = text[:-1].rstrip()
    unknown = {v for v in re.findall(r"\$\{?([A-Za-z_]\w*)", text)
               if v not in _RUNNER_VARS and not v.startswith("BT_")}
    if unknown or stall is None:
        raise RuntimeError(f"{init}: the agent's bt-download line uses {sorted(unknown)} "
                           "(or STALL has no default); update boottorrentlab/devkit/agent.py")
    return text, stall


def agent_function(name: str, init: Path = AGENT_DIR / "init") -> str:
    """The text of the agent's shell function `name`, to run it on a host beside what
    copies its job in Python (the lab simulator's progress reports)."""
    lines = init.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line == f"{name}() {{"), None)
    if start is None:
        raise RuntimeError(f"{init} has no shell function {name}() at the start of a line")
    end = lines.index("}", start)
    return "\n".join(lines[start:end + 1]) + "\n"


def client_runner(work: Path) -> Path:
    """The shell script each client runs in boottorrent mode (written into `work`)."""
    command, stall = agent_download_command()
    script = work / "bt-client.sh"
    script.write_text(f"""#!/bin/sh
# One client on a host: the phase-1 agent's steps from the boot spec to the OS's files
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
# A client on a host runs no VM and writes no disk: it seeds for seed_time, from memory.
seed_time=$BT_SEED_TIME
from_disk=
# The agent's own command line, from boottorrentd/phase1/agent/init:
{command}
""")
    script.chmod(0o755)
    return script


def read_status(path: Path) -> dict[str, str]:
    """bt-download's status file (BT_STATE, BT_ERROR, ...); empty before it writes one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(re.findall(r"^(BT_\w+)='([^']*)'$", text, re.MULTILINE))
