"""Logging to a real journald, and the dbus-next fallback."""

import json
import os
import subprocess

import pytest

from boottorrentd.util.wait import wait_until
from tests.conftest import BIN, Daemon, make_os

pytestmark = pytest.mark.integration

# journald by hand in a private mount namespace: tmpfs over the directories it writes,
# so the host's logs (if any) are neither read nor touched.
JOURNAL_NS = r"""
set -e
mkdir -p /run/systemd /run/log
mount -t tmpfs tmpfs /run/systemd
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
/lib/systemd/systemd-journald &
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
echo ready
exec sleep 600
"""


@pytest.fixture
def journal_namespace():
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               JOURNAL_NS], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    yield ["nsenter", "-t", str(holder.pid), "-m", "--"]
    subprocess.run(["pkill", "-P", str(holder.pid)], check=False)
    holder.kill()
    holder.wait()


def test_daemon_logs_to_the_journal_with_its_identifier_and_fields(daemon_dirs: Daemon,
                                                                   journal_namespace, tmp_path):
    daemon_dirs.prefix = journal_namespace
    daemon_dirs.start()
    daemon_dirs.ctl("add-os", "journaled", str(make_os(tmp_path / "src")))
    daemon_dirs.stop()
    def journaled() -> list[dict] | None:
        out = subprocess.run([*journal_namespace, "journalctl", "-o", "json", "--no-pager",
                              "SYSLOG_IDENTIFIER=boottorrentd"],
                             capture_output=True, text=True, check=True).stdout
        entries = [json.loads(line) for line in out.splitlines()]
        return entries if any(e.get("MESSAGE", "").startswith("added OS journaled")
                              for e in entries) else None

    entries = wait_until(journaled, timeout=10, what="the entry 'added OS journaled' in the "
                         "journal", interval=0.2)
    added = [e for e in entries if e.get("MESSAGE", "").startswith("added OS journaled")]
    assert added, entries
    assert added[0]["BOOTTORRENT_OS"] == "journaled"
    assert len(added[0]["BOOTTORRENT_INFOHASH"]) == 40
    assert added[0]["PRIORITY"] == "6"
    assert any("ready on org.boottorrent1" in e.get("MESSAGE", "") for e in entries)


def test_daemon_and_cli_fall_back_to_dbus_next_without_dbus_fast(daemon_dirs: Daemon,
                                                                   tmp_path):
    shadow = tmp_path / "shadow" / "dbus_fast"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("dbus-fast hidden by the test")\n')
    # The shadow first; then whatever PYTHONPATH chose the tree under test.
    path = [str(shadow.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(daemon_dirs.bus.env, PYTHONPATH=os.pathsep.join(path))
    daemon_dirs.start(env=env)
    added = subprocess.run([str(BIN / "boottorrentctl"),
                            "add-os", "fallback", str(make_os(tmp_path / "src"))],
                           env=env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert "fallback" in daemon_dirs.ctl("list-os").stdout
    code, stderr = daemon_dirs.stop()
    assert code == 0
    assert "(dbus-next," in stderr
