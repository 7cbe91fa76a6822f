"""The session's own bookkeeping, without root: what it remembers in session.json, that a
failed start undoes its claim, and what `degraded` means. The network and the children
are stood in for; tests/integration/test_session.py runs them for real."""

import asyncio
import json
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from boottorrentd.clients.registry import Registry
from boottorrentd.config import BootSection, Config
from boottorrentd.errors import BootTorrentError
from boottorrentd.library.store import Library
from boottorrentd.session import network
from boottorrentd.session.network import NetworkClaim
from boottorrentd.session.session import Session
from boottorrentd.session.supervisor import Child, ChildSpec, ChildState

CLAIM = NetworkClaim("eth0", IPv4Interface("10.9.0.1/24"), added_address=True, set_up=True)


class Host:
    """The boot interface: what was claimed and released."""

    def __init__(self) -> None:
        self.claims: list[tuple[str, IPv4Interface]] = []
        self.released: list[NetworkClaim] = []

    def claim(self, interface: str, address: IPv4Interface) -> NetworkClaim:
        self.claims.append((interface, address))
        return CLAIM

    def release(self, claim: NetworkClaim) -> None:
        self.released.append(claim)


@pytest.fixture
def host(monkeypatch) -> Host:
    fake = Host()
    monkeypatch.setattr(network, "claim", fake.claim)
    monkeypatch.setattr(network, "release", fake.release)
    return fake


@pytest.fixture
def session(tmp_path: Path, monkeypatch) -> Session:
    async def no_children(self: Session) -> None:
        pass

    monkeypatch.setattr(Session, "_start_children", no_children)
    state = tmp_path / "state"
    state.mkdir()
    config = Config(boottorrent=BootSection(host_ip="10.9.0.1"))
    return Session(config, Library(state), Registry(state / "clients.json"), state,
                   tmp_path / "run", lambda: None)


def remembered(session: Session) -> dict:
    return json.loads(session.state_file.read_text())


def test_a_running_session_is_remembered_with_its_claim(session, host):
    async def main() -> None:
        await session.start()
        assert remembered(session) == {"active": True, "claim": CLAIM.to_dict()}
        await session.stop()

    asyncio.run(main())

    assert host.claims == [("eth0", IPv4Interface("10.9.0.1/24"))]


def test_a_stopped_session_is_forgotten_and_its_claim_undone(session, host):
    async def main() -> None:
        await session.start()
        await session.stop()

    asyncio.run(main())

    assert remembered(session) == {"active": False, "claim": None}
    assert host.released == [CLAIM]


def test_a_daemon_shutdown_keeps_the_session_to_bring_back(session, host):
    async def main() -> None:
        await session.start()
        await session.stop(forget=False)

    asyncio.run(main())

    assert remembered(session)["active"] is True
    assert Session.remembered(session.state_file.parent)["active"] is True
    assert host.released == [CLAIM]


def test_a_failed_start_undoes_the_claim_and_is_not_remembered(session, host, monkeypatch):
    async def dnsmasq_fails(self: Session) -> None:
        raise BootTorrentError("dnsmasq did not become ready")

    monkeypatch.setattr(Session, "_start_children", dnsmasq_fails)

    with pytest.raises(BootTorrentError, match="dnsmasq did not become ready"):
        asyncio.run(session.start())

    assert host.released == [CLAIM]
    assert remembered(session) == {"active": False, "claim": None}
    assert not session.degraded


def test_a_start_first_undoes_the_claim_a_killed_daemon_left(session, host):
    left = NetworkClaim("eth0", IPv4Interface("10.9.0.1/24"), added_address=True, set_up=False)
    session.state_file.write_text(json.dumps({"active": True, "claim": left.to_dict()}))

    async def main() -> None:
        await session.start()
        await session.stop()

    asyncio.run(main())

    assert host.released == [left, CLAIM]


def test_a_session_is_degraded_only_while_running_with_a_child_down(session, host):
    session.supervisor.children["dnsmasq"] = Child(ChildSpec("dnsmasq", ["dnsmasq"]),
                                                    state=ChildState.BACKOFF)
    assert not session.degraded  # not started: nothing to degrade

    async def main() -> None:
        await session.start()
        session.supervisor.children["dnsmasq"] = Child(ChildSpec("dnsmasq", ["dnsmasq"]),
                                                        state=ChildState.BACKOFF)
        assert session.degraded
        assert [(c.name, c.state) for c in session.children()] == [("dnsmasq", "backoff")]
        assert session.reason == "child dnsmasq: backoff"
        session.supervisor.children["dnsmasq"].state = ChildState.RUNNING
        assert not session.degraded
        await session.stop()

    asyncio.run(main())


def test_another_dhcp_server_makes_a_running_session_degraded_and_names_it(session, host):
    async def main() -> None:
        await session.start()
        assert (session.degraded, session.reason) == (False, "")
        session.dhcp_watch.update([IPv4Address("10.9.0.2")])
        assert session.degraded
        assert "10.9.0.2" in session.reason
        await session.stop()

    asyncio.run(main())
