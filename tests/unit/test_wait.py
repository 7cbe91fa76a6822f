"""boottorrentd.util.wait: the one poll-until-deadline helper."""

import asyncio
import itertools

import pytest

from boottorrentd.util.wait import poll_until, wait_until


def test_wait_returns_the_checks_first_true_value():
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), timeout=5, what="ready", interval=0) == "ready"


def test_wait_names_what_it_waited_for_at_the_deadline():
    seen = itertools.count()
    with pytest.raises(TimeoutError, match=r"the seed is not up, last state \d+ \(waited 0.05 s\)"):
        wait_until(lambda: False, timeout=0.05, interval=0.01,
                   what=lambda: f"the seed is not up, last state {next(seen)}")


def test_wait_lets_the_checks_own_errors_through():
    def check() -> bool:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        wait_until(check, timeout=5, what="x")


def test_poll_until_awaits_the_check_on_the_event_loop():
    calls = []

    async def check() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) == 3 else None

    assert asyncio.run(poll_until(check, timeout=5, what="x", interval=0)) == 3


def test_poll_until_times_out_with_the_message():
    async def never() -> bool:
        return False

    with pytest.raises(TimeoutError, match="tracker accepts the hash"):
        asyncio.run(poll_until(never, timeout=0.02, what="tracker accepts the hash",
                               interval=0.005))
