"""The Manager's session state machine, driven without root: a fake session stands in for
the real one (whose own tests, in tests/integration/test_session.py, need namespaces)."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from boottorrentd.config import Config, load_config
from boottorrentd.errors import BootTorrentError, ConfigError, InvalidArgument
from boottorrentd.manager import Manager, SessionState


@dataclass
class FakeSession:
    """Records what the Manager asks of it; `fail` is raised by start, `gate` holds it."""

    config: Config
    on_change: Callable[[], None]
    fail: BaseException | None = None
    gate: asyncio.Event | None = None
    degraded: bool = False
    reason: str = ""
    running: bool = False
    stops: list[bool] = field(default_factory=list)

    async def start(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.running = True

    async def stop(self, *, forget: bool = True) -> None:
        self.running = False
        self.stops.append(forget)

    def reconfigure(self, config: Config) -> None:
        self.config = config


class Sessions:
    """The factory handed to the Manager: every session it made, and how the next behaves."""

    def __init__(self) -> None:
        self.made: list[FakeSession] = []
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None

    def __call__(self, config, library, registry, state_dir, runtime_dir, on_change):
        session = FakeSession(config, on_change, fail=self.fail, gate=self.gate)
        self.made.append(session)
        return session


@dataclass
class World:
    manager: Manager
    sessions: Sessions
    seen: list[tuple[str, str]]


CONFIG = """\
boottorrent:
  version: 0
  host_ip: 10.20.0.1
  timeout: 30
dnsmasq:
  interface: bt0
  dhcp_range: 10.20.0.50,10.20.0.150,12h
tracker:
  kind: none
aria2:
  bt_enable_lpd: true
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    sessions = Sessions()
    config_file = tmp_path / "boottorrent.yaml"
    config_file.write_text(CONFIG)
    manager = Manager(load_config(config_file), config_file,
                      tmp_path / "state", tmp_path / "run", session_factory=sessions)
    seen: list[tuple[str, str]] = []
    manager.on_state_change.append(lambda: seen.append((manager.state, manager.state_reason)))
    return World(manager, sessions, seen)


def test_a_new_manager_is_stopped(world):
    assert (world.manager.state, world.manager.state_reason) == ("stopped", "")
    assert world.manager.session is None


def test_start_goes_through_starting_to_running(world):
    asyncio.run(world.manager.start_session())

    assert world.seen == [("starting", ""), ("running", "")]
    assert [s.running for s in world.sessions.made] == [True]
    assert world.manager.session is world.sessions.made[0]


def test_the_state_is_a_plain_string_on_the_bus(world):
    asyncio.run(world.manager.start_session())

    assert world.manager.state == SessionState.RUNNING
    assert isinstance(world.manager.state, str) and f"{world.manager.state}" == "running"


def test_starting_a_running_session_again_changes_nothing(world):
    async def main() -> None:
        await world.manager.start_session()
        await world.manager.start_session()

    asyncio.run(main())

    assert len(world.sessions.made) == 1
    assert world.seen == [("starting", ""), ("running", "")]


def test_a_failed_start_says_why_and_keeps_no_session(world):
    world.sessions.fail = BootTorrentError("eth9: no such interface; set dnsmasq.interface")

    with pytest.raises(BootTorrentError, match="eth9: no such interface"):
        asyncio.run(world.manager.start_session())

    assert world.seen == [
        ("starting", ""),
        ("failed", "eth9: no such interface; set dnsmasq.interface"),
    ]
    assert world.manager.session is None


def test_an_unexpected_start_error_becomes_a_daemon_error_with_its_text(world):
    world.sessions.fail = OSError("address already in use")

    with pytest.raises(BootTorrentError, match="the session failed to start: address already"):
        asyncio.run(world.manager.start_session())

    assert (world.manager.state, world.manager.state_reason) == (
        "failed", "address already in use")


def test_a_start_after_a_failed_one_runs_and_clears_the_reason(world):
    world.sessions.fail = BootTorrentError("dnsmasq did not become ready")

    async def main() -> None:
        with pytest.raises(BootTorrentError):
            await world.manager.start_session()
        world.sessions.fail = None
        await world.manager.start_session()

    asyncio.run(main())

    assert (world.manager.state, world.manager.state_reason) == ("running", "")
    assert world.seen[-2:] == [("starting", ""), ("running", "")]


def test_stop_goes_through_stopping_to_stopped_and_forgets_the_session(world):
    async def main() -> None:
        await world.manager.start_session()
        world.seen.clear()
        await world.manager.stop_session()

    asyncio.run(main())

    assert world.seen == [("stopping", ""), ("stopped", "")]
    assert world.sessions.made[0].stops == [True]
    assert world.manager.session is None


def test_a_daemon_shutdown_stops_the_session_but_keeps_it_remembered(world):
    async def main() -> None:
        await world.manager.start_session()
        await world.manager.stop_session(forget=False)

    asyncio.run(main())

    assert world.sessions.made[0].stops == [False]


def test_stop_after_a_failed_start_clears_the_failure(world):
    world.sessions.fail = BootTorrentError("no boot address")

    async def main() -> None:
        with pytest.raises(BootTorrentError):
            await world.manager.start_session()
        await world.manager.stop_session()

    asyncio.run(main())

    assert world.seen[-1] == ("stopped", "")
    assert world.sessions.made[0].stops == []


def test_stopping_a_stopped_manager_changes_nothing(world):
    asyncio.run(world.manager.stop_session())

    assert world.seen == []
    assert world.manager.state == "stopped"


def test_a_running_session_with_a_child_down_shows_degraded_and_recovers(world):
    asyncio.run(world.manager.start_session())
    session = world.sessions.made[0]

    session.degraded = True
    session.on_change()  # the supervisor: dnsmasq exited and waits to be restarted
    session.degraded = False
    session.on_change()

    assert world.seen[-2:] == [("degraded", ""), ("running", "")]


def test_a_stop_during_a_start_waits_for_the_start_to_finish(world):
    async def main() -> None:
        world.sessions.gate = asyncio.Event()
        starting = asyncio.create_task(world.manager.start_session())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(world.manager.stop_session())
        await asyncio.sleep(0)
        assert world.manager.state == "starting"
        world.sessions.gate.set()
        await asyncio.gather(starting, stopping)

    asyncio.run(main())

    assert world.seen == [("starting", ""), ("running", ""), ("stopping", ""), ("stopped", "")]


def _remember(world: World, record: dict) -> None:
    world.manager.state_dir.mkdir(parents=True, exist_ok=True)
    (world.manager.state_dir / "session.json").write_text(json.dumps(record))


def test_restore_starts_the_session_that_ran_before_the_daemon_restarted(world):
    _remember(world, {"active": True, "claim": None})

    asyncio.run(world.manager.restore_session())

    assert world.manager.state == "running"


@pytest.mark.parametrize("record", [None, {"active": False, "claim": None}])
def test_restore_starts_nothing_when_no_session_was_running(world, record):
    if record is not None:
        _remember(world, record)

    asyncio.run(world.manager.restore_session())

    assert (world.manager.state, world.sessions.made) == ("stopped", [])


def test_a_failed_restore_leaves_the_daemon_up_and_failed(world, caplog):
    _remember(world, {"active": True, "claim": None})
    world.sessions.fail = BootTorrentError("eth9: no such interface")

    asyncio.run(world.manager.restore_session())  # does not raise: the daemon keeps serving

    assert (world.manager.state, world.manager.state_reason) == (
        "failed", "eth9: no such interface")
    assert "could not restore the boot session: eth9" in caplog.text


@pytest.mark.parametrize("text", ["AA-BB-CC-DD-EE-FF", "aabbccddeeff", "aa:bb:cc:dd:ee:ff"])
def test_assignments_take_any_spelling_of_a_mac(world, text):
    assert asyncio.run(world.manager.unassign(text)) == "aa:bb:cc:dd:ee:ff"


def test_a_bad_mac_is_the_callers_error(world):
    with pytest.raises(InvalidArgument, match="'nonsense' is not a MAC address"):
        asyncio.run(world.manager.unassign("nonsense"))


def test_an_image_os_is_assigned_only_where_the_config_allows_disk_writes(world, tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "disk.img").write_bytes(b"\xa5" * 4096)
    (folder / "config.yaml").write_text("method: image\nimage: disk.img\n")
    world.manager.load()
    asyncio.run(world.manager.add_os("lab", str(folder)))

    with pytest.raises(InvalidArgument, match=r"disk writes are off: set "
                       r"client\.allow_disk_writes: true"):
        asyncio.run(world.manager.assign("aa:bb:cc:dd:ee:ff", "lab"))
    assert world.manager.registry.assignments == {}

    world.manager.config_path.write_text(CONFIG + "client:\n  allow_disk_writes: true\n")
    asyncio.run(world.manager.reload())
    asyncio.run(world.manager.assign("aa:bb:cc:dd:ee:ff", "lab"))
    assert world.manager.registry.assignments == {"aa:bb:cc:dd:ee:ff": "lab"}


def test_a_running_sessions_reason_is_the_state_reason(world):
    asyncio.run(world.manager.start_session())
    session = world.sessions.made[0]

    session.reason = "proxyDHCP beside the DHCP server at 10.9.0.2"

    assert (world.manager.state, world.manager.state_reason) == (
        "running", "proxyDHCP beside the DHCP server at 10.9.0.2")


# --- reload ----------------------------------------------------------------------------------


def _edit(world: World, old: str, new: str) -> None:
    path = world.manager.config_path
    path.write_text(path.read_text().replace(old, new))


def test_reload_gives_a_running_session_the_new_timeout_at_once(world):
    asyncio.run(world.manager.start_session())
    _edit(world, "timeout: 30", "timeout: 5")

    changes = asyncio.run(world.manager.reload())

    assert changes.live == ("boottorrent.timeout",) and changes.restart == ()
    assert world.sessions.made[0].config.boottorrent.timeout == 5
    assert (world.manager.state, world.manager.state_reason) == ("running", "")
    assert world.sessions.made[0].stops == []


def test_reload_names_what_needs_a_restart_and_the_session_keeps_the_old_value(world):
    asyncio.run(world.manager.start_session())
    _edit(world, "interface: bt0", "interface: bt7")

    changes = asyncio.run(world.manager.reload())

    assert changes.restart == ("dnsmasq.interface",)
    assert world.manager.state_reason == "restart the session to apply: dnsmasq.interface"
    assert world.manager.config_in_use.dnsmasq.interface == "bt0"
    assert world.manager.config.dnsmasq.interface == "bt7"
    assert world.sessions.made[0].stops == []


def test_a_restart_applies_what_the_reload_could_not(world):
    asyncio.run(world.manager.start_session())
    _edit(world, "interface: bt0", "interface: bt7")
    asyncio.run(world.manager.reload())

    async def restart() -> None:
        await world.manager.stop_session()
        await world.manager.start_session()

    asyncio.run(restart())

    assert world.sessions.made[-1].config.dnsmasq.interface == "bt7"
    assert (world.manager.state, world.manager.state_reason) == ("running", "")


def test_editing_the_file_back_clears_the_restart_reason(world):
    asyncio.run(world.manager.start_session())
    _edit(world, "interface: bt0", "interface: bt7")
    asyncio.run(world.manager.reload())
    _edit(world, "interface: bt7", "interface: bt0")

    asyncio.run(world.manager.reload())

    assert world.manager.state_reason == ""


def test_an_invalid_file_is_refused_with_its_key_and_changes_nothing(world):
    asyncio.run(world.manager.start_session())
    before = world.manager.config
    _edit(world, "timeout: 30", "timeout: soon")
    world.seen.clear()

    with pytest.raises(ConfigError, match=r"boottorrent\.timeout: expected a whole number"):
        asyncio.run(world.manager.reload())

    assert world.manager.config is before
    assert world.sessions.made[0].config is before
    assert world.seen == [] and world.sessions.made[0].stops == []


def test_a_start_uses_the_file_on_disk_without_a_reload(world):
    _edit(world, "interface: bt0", "interface: bt7")

    asyncio.run(world.manager.start_session())

    assert world.sessions.made[0].config.dnsmasq.interface == "bt7"


def test_a_start_with_an_invalid_file_fails_and_says_which_key(world):
    _edit(world, "interface: bt0", "interface: [bt0]")

    with pytest.raises(ConfigError, match=r"dnsmasq\.interface"):
        asyncio.run(world.manager.start_session())

    assert world.manager.state == "failed" and "dnsmasq.interface" in world.manager.state_reason
    assert world.sessions.made == []


def test_the_configuration_properties_follow_a_reload_of_a_stopped_daemon(world):
    announced: list[str] = []
    world.manager.on_config_change.append(
        lambda: announced.append(world.manager.config_in_use.dnsmasq.interface))
    _edit(world, "interface: bt0", "interface: bt7")

    asyncio.run(world.manager.reload())

    assert announced == ["bt7"]
