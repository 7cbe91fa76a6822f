"""StopSeeding: the server stops its seed of one OS for the rest of the session; the
tracker, the torrent and the menu stay, so machines that hold it serve each other."""

import pytest

from tests.integration import test_session
from tests.integration.test_session import BootLan

pytestmark = pytest.mark.integration

boot_lan = test_session.boot_lan


def test_stop_seeding_drops_the_os_from_the_seed_only_until_the_session_restarts(
        boot_lan: BootLan):
    b = boot_lan
    refused = b.daemon.ctl("stop-seeding", "lab", check=False)
    assert refused.returncode != 0 and "no boot session runs" in refused.stderr
    b.daemon.ctl("start")
    assert [s["name"] for s in b.status()["seeding"]] == ["lab"]
    unknown = b.daemon.ctl("stop-seeding", "nothing", check=False)
    assert unknown.returncode != 0 and "no OS named 'nothing'" in unknown.stderr

    said = b.daemon.ctl("stop-seeding", "lab").stdout

    assert "no longer seeds lab" in said
    status = b.status()
    assert status["seeding"] == [] and status["state"] == "running"
    torrent = b.srv.run("curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}",
                        f"http://{b.server}/torrents/lab.torrent", check=False)
    assert torrent.stdout == "200", "the torrent is still offered"

    b.daemon.ctl("stop")
    b.daemon.ctl("start")
    assert [s["name"] for s in b.status()["seeding"]] == ["lab"]
