"""The lab simulator's progress reports are the agent's: its Python copy of the agent's
progress_report() gives, for every state of bt-download's status file, the JSON the
agent's own shell function prints."""

import json
import subprocess
from pathlib import Path

import pytest

from boottorrentlab.devkit.agent import agent_function, read_status
from boottorrentlab.devkit.labsim.config import OS_NAME
from boottorrentlab.devkit.labsim.machines import progress_report

COUNTS = {"BT_PROGRESS": "0.4375", "BT_DONE": "7340032", "BT_TOTAL": "16777216",
          "BT_UPLOADED": "1048576", "BT_DOWN_RATE": "500000", "BT_UP_RATE": "125000",
          "BT_PEERS": "5"}


def agents_report(run: Path, stage: str | None) -> dict | None:
    """What the agent's progress_report prints in busybox sh, as JSON (None: nothing)."""
    script = agent_function("progress_report") + 'progress_report "$1"\n'
    out = subprocess.run(["busybox", "sh", "-c", script, "sh", stage or ""],
                         env={"RUN": str(run), "OS": OS_NAME, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out else None


def status_file(run: Path, values: dict[str, str] | None) -> Path:
    """bt-download's status file, written as bt-download writes it (none: not yet)."""
    (run / "dl").mkdir(parents=True, exist_ok=True)
    path = run / "dl" / "status"
    path.unlink(missing_ok=True)
    if values is not None:
        path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()) + "BT_ERROR=''\n")
    return path


@pytest.mark.parametrize("state", [None, "starting", "downloading", "seeding", "verifying",
                                   "done", "failed"])
@pytest.mark.parametrize("stage", [None, "booting"])
def test_the_simulator_reports_what_the_agent_reports(tmp_path, state, stage):
    status = status_file(tmp_path, None if state is None else {"BT_STATE": state, **COUNTS})
    ours = progress_report(read_status(status), stage)
    assert ours == agents_report(tmp_path, stage)
    assert ours is not None or (stage is None and state in ("done", "failed"))
