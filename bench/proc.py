"""The processes a run starts: their environment, their namespace, their end; the log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from boottorrentlab.devkit.lan import Netns

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy",
                    "notify_socket")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every client program: no proxy (aria2c and curl would use one)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
    env["LC_ALL"] = "C"
    return env | (extra or {})


def launch(ns: Netns, cmd: Sequence[str], log: Path) -> subprocess.Popen:
    """`cmd` in namespace `ns`, output to `log`, leading a process group of its own so that
    kill_group ends whatever it starts."""
    with open(log, "wb") as out:
        return subprocess.Popen(["ip", "netns", "exec", ns.name, *cmd], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=clean_env(), start_new_session=True)


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session), then KILL."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
