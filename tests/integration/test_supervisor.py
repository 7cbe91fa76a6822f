"""The supervisor with real child processes."""

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import time

import pytest

from boottorrentd.session.supervisor import ChildSpec, Supervisor
from boottorrentd.util.wait import wait_until
from tests.conftest import alive

pytestmark = pytest.mark.integration


async def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_a_killed_child_is_restarted_within_a_second_and_counted(tmp_path):
    async def scenario():
        changes = []
        sup = Supervisor(tmp_path / "children.json", lambda: changes.append(sup.degraded))
        child = await sup.start(ChildSpec("sleeper", ["sleep", "600"]))
        first = child.pid
        assert child.state == "running" and alive(first)
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: child.state == "backoff")
        assert sup.degraded
        killed_at = time.monotonic()
        await wait_for(lambda: child.state == "running" and child.pid not in (0, first))
        assert time.monotonic() - killed_at < 1.0
        assert child.restarts == 1 and child.last_exit == "signal 9"
        assert True in changes and changes[-1] is False
        second = child.pid
        await sup.stop()
        assert not alive(second)
        assert not (tmp_path / "children.json").exists()

    asyncio.run(scenario())


def test_a_crashing_child_backs_off_exponentially(tmp_path):
    async def scenario():
        starts: list[float] = []
        sup = Supervisor(tmp_path / "children.json", lambda: None)
        child = await sup.start(ChildSpec("crasher", ["sh", "-c", "sleep 0.05; exit 3"]))
        starts.append(child.started_at)

        def restarted() -> bool:
            if child.started_at != starts[-1]:
                starts.append(child.started_at)
            return len(starts) == 4

        await wait_for(restarted, timeout=15)
        await sup.stop()
        return child, [b - a for a, b in itertools.pairwise(starts)]

    child, gaps = asyncio.run(scenario())
    assert child.last_exit == "exit code 3"
    assert gaps[0] < 1.0, "the first retry comes within a second"
    # Each wait doubles: about 0.5 s, 1 s, 2 s (plus the child's own 0.05 s).
    assert gaps[1] > 1.6 * gaps[0] and gaps[2] > 1.6 * gaps[1], gaps


def test_child_output_is_logged_under_its_own_identifier(tmp_path, caplog):
    async def scenario():
        sup = Supervisor(tmp_path / "children.json", lambda: None)
        await sup.start(ChildSpec("talker", ["sh", "-c", "echo hello from child; sleep 600"]))
        await wait_for(lambda: any(r.getMessage() == "hello from child" for r in caplog.records))
        await sup.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    record = next(r for r in caplog.records if r.getMessage() == "hello from child")
    assert record.SYSLOG_IDENTIFIER == "boottorrentd-talker"
    assert record.BOOTTORRENT_CHILD == "talker"


def test_stop_takes_what_a_child_started_with_it(tmp_path, caplog):
    async def scenario() -> int:
        sup = Supervisor(tmp_path / "children.json", lambda: None)
        # A helper that ignores SIGTERM, as a shell's background command does.
        await sup.start(ChildSpec("parent", [
            "sh", "-c", "sh -c 'trap \"\" TERM; exec sleep 600' & echo helper $!; wait"]))
        await wait_for(lambda: any(r.getMessage().startswith("helper ")
                                   for r in caplog.records))
        helper = next(int(r.getMessage().split()[1]) for r in caplog.records
                      if r.getMessage().startswith("helper "))
        assert alive(helper)
        await sup.stop()
        return helper

    with caplog.at_level(logging.INFO):
        helper = asyncio.run(scenario())
    # The group was killed; the helper, reparented to init, is gone once init reaps it.
    wait_until(lambda: not alive(helper), timeout=5, what="the child's helper to be gone")


def test_a_child_that_is_never_ready_fails_the_start_and_is_not_left_running(tmp_path):
    async def never():
        raise RuntimeError("RPC did not answer")

    async def scenario():
        sup = Supervisor(tmp_path / "children.json", lambda: None)
        with pytest.raises(RuntimeError, match="stubborn did not become ready: RPC did not"):
            await sup.start(ChildSpec("stubborn", ["sleep", "600"], ready=never))
        proc = sup.children["stubborn"].process
        assert proc.returncode is not None
        await sup.stop()

    asyncio.run(scenario())


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    async def scenario():
        sup = Supervisor(tmp_path / "children.json", lambda: None)
        child = await sup.start(ChildSpec("deaf", ["sh", "-c", "trap '' TERM; exec sleep 600"]))
        pid = child.pid
        await sup.stop()
        assert not alive(pid)

    asyncio.run(scenario())


def test_leftovers_of_a_killed_daemon_are_killed_by_pid_and_program_only(tmp_path):
    ours = subprocess.Popen(["sleep", "601"])
    other = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    pidfile = tmp_path / "children.json"
    pidfile.write_text(json.dumps({
        # Started through a wrapper that exec'd it: the program is later in the argv.
        "tracker": {"pid": ours.pid, "argv": ["setpriv", "--reuid=65534", "--", "sleep"]},
        "dnsmasq": {"pid": other.pid, "argv": ["dnsmasq", "--conf-file=x"]}}))
    Supervisor(pidfile, lambda: None).kill_leftovers()
    assert ours.wait(5) == -signal.SIGKILL
    assert other.poll() is None, "a process that is not ours must be left alone"
    other.kill()
    other.wait()
    assert not pidfile.exists()
