"""Supervised children (dnsmasq, transmission-daemon, the tracker)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class ChildSpec:
    """How to run one child. `ready` is awaited after every (re)start and raises when the
    child does not become usable; `started` then runs once it is (e.g. re-add torrents)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready: Callable[[], Awaitable[None]] | None = None
    started: Callable[[], Awaitable[None]] | None = None
