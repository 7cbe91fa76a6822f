"""Waiting for a condition with a deadline: one rule for the daemon, the lab and the tests.

The check is asked first at once, then every `interval` seconds; it returns something true
when the wait is over (that value is returned) and something false to go on waiting. What
the caller is waiting for is named by `what` (a text, or a function called at the deadline
so the message can say what was last seen), and a TimeoutError carries it.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Describe = str | Callable[[], str]


def _timeout(what: Describe, timeout: float) -> TimeoutError:
    text = what() if callable(what) else what
    return TimeoutError(f"{text} (waited {timeout:g} s)")


def wait_until(check: Callable[[], T | None], *, timeout: float, what: Describe,
               interval: float = 0.05) -> T:
    """Block until `check()` is true; return its value. Raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timeout(what, timeout)
        time.sleep(interval)


async def poll_until(check: Callable[[], Awaitable[T | None]], *, timeout: float, what: Describe,
                     interval: float = 0.05) -> T:
    """`wait_until` for the event loop: `check` is a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() >= deadline:
            raise _timeout(what, timeout)
        await asyncio.sleep(interval)
