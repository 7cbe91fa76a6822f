"""boottorrent-gtk is a pure client: of the daemon it imports only the shared D-Bus names."""

import subprocess
from pathlib import Path

from boottorrentlab.devkit.desktop import SYSTEM_PYTHON

REPO = Path(__file__).resolve().parents[2]


def test_the_desktop_tool_imports_of_the_daemon_only_its_api():
    probe = ("import sys, boottorrentgtk.app; "
             "print('\\n'.join(m for m in sys.modules if m.startswith('boottorrent')))")
    loaded = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.split()
    daemon = {m for m in loaded if m.startswith("boottorrentd")}
    assert daemon == {"boottorrentd", "boottorrentd.api"}
    assert "boottorrentgtk.window" in loaded  # the whole window was imported
