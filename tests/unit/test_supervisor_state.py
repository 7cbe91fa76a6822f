"""What the supervisor's children's states add up to, without starting any process (the
restarts themselves are in tests/integration/test_supervisor.py)."""

import json
from pathlib import Path

import pytest

from boottorrentd.session.supervisor import Child, ChildSpec, ChildState, Supervisor


def supervisor_with(tmp_path: Path, **states: ChildState) -> Supervisor:
    supervisor = Supervisor(tmp_path / "children.json", lambda: None)
    for name, state in states.items():
        supervisor.children[name] = Child(ChildSpec(name, [name]), state=state)
    return supervisor


def test_a_supervisor_with_every_child_running_is_not_degraded(tmp_path):
    supervisor = supervisor_with(tmp_path, opentracker=ChildState.RUNNING,
                                 dnsmasq=ChildState.RUNNING)

    assert not supervisor.degraded


@pytest.mark.parametrize("state", [ChildState.STARTING, ChildState.BACKOFF])
def test_one_child_not_running_degrades_the_supervisor(tmp_path, state):
    supervisor = supervisor_with(tmp_path, opentracker=ChildState.RUNNING, dnsmasq=state)

    assert supervisor.degraded


def test_a_new_child_is_starting_and_shows_no_pid_or_uptime():
    child = Child(ChildSpec("dnsmasq", ["dnsmasq"]))

    assert (child.state, child.pid, child.uptime) == ("starting", 0, 0.0)


@pytest.mark.parametrize("content", [
    b"", b'{"dnsmasq": {"pid": 42', b"\xff\x00garbage",
    json.dumps({"dnsmasq": {"pid": "1", "argv": ["dnsmasq"]}}).encode(),
    json.dumps({"dnsmasq": {"pid": 1, "argv": ["dnsmasq"]}}).encode(),
    json.dumps({"dnsmasq": ["dnsmasq"]}).encode(),
])
def test_a_damaged_pid_file_is_set_aside_and_nothing_is_killed(tmp_path, caplog, content):
    pidfile = tmp_path / "children.json"
    pidfile.write_bytes(content)

    Supervisor(pidfile, lambda: None).kill_leftovers()

    [aside] = tmp_path.glob("children.json.corrupt-*")
    assert aside.read_bytes() == content
    assert f"{pidfile} is corrupt" in caplog.text
