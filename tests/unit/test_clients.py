"""The client registry: stages from DHCP, HTTP and reports; validation; assignments."""

import asyncio
import copy
import json
from pathlib import Path

import pytest

from boottorrentd.clients.registry import STAGES, Asker, Client, Registry, validate_report

MAC = "52:54:00:12:34:56"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Collects what the registry tells its listeners."""

    def __init__(self, registry: Registry) -> None:
        self.new: list[str] = []
        self.changes: list[tuple[str, set[str]]] = []
        registry.on_new.append(lambda c: self.new.append(c.mac))
        registry.on_change.append(lambda c, fields: self.changes.append((c.mac, set(fields))))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(tmp_path: Path, clock: Clock) -> Registry:
    return Registry(tmp_path / "clients.json", clock=clock)


def booted(registry: Registry, mac: str = MAC) -> None:
    """Take a machine through a whole boot."""
    registry.lease("add", mac, "10.0.0.50", None)
    registry.http_seen(mac, "10.0.0.50", "menu")
    registry.http_seen(mac, "10.0.0.50", "phase1")
    registry.report(mac, {"stage": "downloading", "os": "debian12", "progress": 0.5,
                          "downloaded_bytes": 500, "peers": 3})
    registry.report(mac, {"stage": "booted", "progress": 1.0})


# --- the client record -----------------------------------------------------------------------


def test_to_dict_has_every_field_for_clients_json():
    client = Client(MAC, ip="10.0.0.5", stage="seeding", progress=1.0, last_seen=5.0)

    assert client.to_dict() == {
        "mac": MAC, "ip": "10.0.0.5", "hostname": "", "os": "", "stage": "seeding",
        "progress": 1.0, "downloaded_bytes": 0, "uploaded_bytes": 0, "down_rate": 0,
        "up_rate": 0, "peers": 0, "last_seen": 5.0, "error": "", "assigned_os": "",
        "imaged_os": "",
    }
    json.dumps(client.to_dict())


# --- stages ----------------------------------------------------------------------------------


def test_a_lease_registers_a_new_machine_at_stage_dhcp(registry, clock):
    seen = Recorder(registry)
    registry.lease("add", "52-54-00-12-34-56", "10.0.0.50", "lab1")

    client = registry.clients[MAC]
    assert (client.ip, client.hostname, client.stage, client.last_seen) == (
        "10.0.0.50", "lab1", "dhcp", clock.now)
    assert seen.new == [MAC]
    assert seen.changes == []


def test_the_machine_moves_through_the_boot_stages(registry):
    registry.lease("add", MAC, "10.0.0.50", None)
    registry.http_seen(MAC, "10.0.0.50", "menu")
    assert registry.clients[MAC].stage == "menu"
    registry.http_seen(MAC, "10.0.0.50", "phase1")
    assert registry.clients[MAC].stage == "phase1"
    for stage in ("downloading", "seeding", "booting", "booted"):
        registry.report(MAC, {"stage": stage})
        assert registry.clients[MAC].stage == stage


def test_a_lease_during_a_boot_keeps_the_stage(registry):
    registry.lease("add", MAC, "10.0.0.50", None)
    registry.http_seen(MAC, "10.0.0.50", "phase1")
    registry.report(MAC, {"stage": "downloading", "progress": 0.3})

    # phase-1 asks for an address itself.
    registry.lease("old", MAC, "10.0.0.51", "phase1")

    client = registry.clients[MAC]
    assert (client.stage, client.progress, client.ip) == ("downloading", 0.3, "10.0.0.51")


@pytest.mark.parametrize("final", [{"stage": "booted"}, {"stage": "failed", "error": "bad"}])
def test_a_lease_asked_for_by_the_firmware_after_a_finished_boot_starts_a_new_one(registry,
                                                                                 final):
    booted(registry)
    registry.report(MAC, final)

    registry.lease("old", MAC, "10.0.0.50", None, asker=Asker.FIRMWARE)

    client = registry.clients[MAC]
    assert (client.stage, client.progress, client.error, client.os, client.peers) == (
        "dhcp", 0.0, "", "", 0)


@pytest.mark.parametrize("asker", [Asker.SYSTEM, Asker.PHASE1, Asker.UNKNOWN])
def test_a_lease_not_asked_for_by_the_firmware_leaves_a_booted_machine_alone(registry, asker):
    booted(registry)

    # The booted OS asking for its address again, renewing it (UNKNOWN: dnsmasq passes no
    # request data then), or losing its name to another lease is not a new boot.
    registry.lease("old", MAC, "10.0.0.50", "lab1", asker=asker)

    client = registry.clients[MAC]
    assert (client.stage, client.hostname, client.os) == ("booted", "lab1", "debian12")


def handed_over(registry: Registry) -> None:
    """Take a machine to the hand-over to its OS: phase-1 reported booting."""
    registry.lease("add", MAC, "10.0.0.50", None, asker=Asker.FIRMWARE)
    registry.http_seen(MAC, "10.0.0.50", "menu")
    registry.http_seen(MAC, "10.0.0.50", "phase1")
    registry.lease("add", MAC, "10.0.0.50", None, asker=Asker.PHASE1)
    registry.report(MAC, {"stage": "booting", "os": "debian12", "progress": 1.0})


def test_a_machine_whose_own_os_asks_for_a_lease_while_booting_is_booted(registry):
    handed_over(registry)
    # phase-1 gave its address back before the kexec.
    registry.lease("del", MAC, "10.0.0.50", None)

    registry.lease("add", MAC, "10.0.0.61", "lab1", asker=Asker.SYSTEM)

    client = registry.clients[MAC]
    assert (client.stage, client.os, client.progress, client.ip, client.hostname) == (
        "booted", "debian12", 1.0, "10.0.0.61", "lab1")


@pytest.mark.parametrize("asker", [Asker.PHASE1, Asker.UNKNOWN])
def test_phase1_renewing_its_lease_while_booting_does_not_make_the_machine_booted(
        registry, asker):
    handed_over(registry)

    # phase-1's udhcpc renews (an "old" event carries no request data: UNKNOWN).
    registry.lease("old", MAC, "10.0.0.50", None, asker=asker)

    assert registry.clients[MAC].stage == "booting"


@pytest.mark.parametrize("stage", ["phase1", "downloading", "seeding"])
def test_a_lease_asked_for_by_an_os_before_the_hand_over_keeps_the_stage(registry, stage):
    registry.lease("add", MAC, "10.0.0.50", None, asker=Asker.FIRMWARE)
    registry.http_seen(MAC, "10.0.0.50", "phase1")
    if stage != "phase1":
        registry.report(MAC, {"stage": stage})

    registry.lease("add", MAC, "10.0.0.50", None, asker=Asker.SYSTEM)

    assert registry.clients[MAC].stage == stage


def test_firmware_asking_after_a_boot_its_os_reported_through_dhcp_starts_a_new_one(registry):
    handed_over(registry)
    registry.lease("add", MAC, "10.0.0.61", "lab1", asker=Asker.SYSTEM)

    registry.lease("add", MAC, "10.0.0.61", None, asker=Asker.FIRMWARE)

    client = registry.clients[MAC]
    assert (client.stage, client.os, client.progress) == ("dhcp", "", 0.0)


def test_fetching_the_boot_script_starts_a_new_boot_attempt(registry):
    booted(registry)

    registry.http_seen(MAC, "10.0.0.50", "menu")

    client = registry.clients[MAC]
    assert (client.stage, client.progress, client.downloaded_bytes, client.os) == (
        "menu", 0.0, 0, "")


def test_a_released_lease_keeps_the_machine_and_forgets_its_address(registry):
    registry.lease("add", MAC, "10.0.0.50", "lab1")
    registry.lease("del", MAC, "10.0.0.50", "lab1")

    client = registry.clients[MAC]
    assert (client.ip, client.hostname, client.stage) == ("", "lab1", "dhcp")


def test_a_release_of_an_older_address_keeps_the_current_one(registry):
    registry.lease("add", MAC, "10.0.0.51", None)
    registry.lease("del", MAC, "10.0.0.50", None)

    assert registry.clients[MAC].ip == "10.0.0.51"


def test_a_release_for_an_unknown_machine_adds_nothing(registry):
    registry.lease("del", MAC, "10.0.0.50", None)

    assert registry.clients == {}


@pytest.mark.parametrize(("call", "message"), [
    (lambda r: r.lease("tftp", MAC, "10.0.0.50", None), "unknown lease action"),
    (lambda r: r.lease("add", "nonsense", "10.0.0.50", None), "not a MAC"),
    (lambda r: r.http_seen(MAC, "10.0.0.50", "booted"), "stage"),
    (lambda r: r.http_seen("nonsense", "10.0.0.50", "menu"), "not a MAC"),
])
def test_bad_events_are_refused(registry, call, message):
    with pytest.raises(ValueError, match=message):
        call(registry)
    assert registry.clients == {}


def test_the_machine_at_an_address_is_the_one_seen_there_last(registry, clock):
    registry.lease("add", MAC, "10.0.0.50", None)
    clock.now += 10
    registry.lease("add", "52:54:00:00:00:02", "10.0.0.50", None)

    assert registry.mac_for_ip("10.0.0.50") == "52:54:00:00:00:02"
    assert registry.mac_for_ip("10.0.0.99") is None
    assert registry.mac_for_ip("") is None


# --- reports ---------------------------------------------------------------------------------


def test_a_good_report_updates_the_client_and_returns_it(registry, clock):
    registry.lease("add", MAC, "10.0.0.50", None)
    clock.now += 5

    client = registry.report(MAC, {
        "stage": "downloading", "progress": 0.25, "downloaded_bytes": 1 << 40,
        "uploaded_bytes": 10, "down_rate": 1000, "up_rate": 0, "peers": 7, "os": "debian12",
    }, ip="10.0.0.60")

    assert client is registry.clients[MAC]
    assert client.to_dict() == {
        "mac": MAC, "ip": "10.0.0.60", "hostname": "", "os": "debian12",
        "stage": "downloading", "progress": 0.25, "downloaded_bytes": 1 << 40,
        "uploaded_bytes": 10, "down_rate": 1000, "up_rate": 0, "peers": 7,
        "last_seen": clock.now, "error": "", "assigned_os": "", "imaged_os": "",
    }


def test_a_report_from_an_unknown_machine_registers_it(registry):
    seen = Recorder(registry)

    registry.report("525400123456", {"stage": "seeding", "progress": 1})

    assert registry.clients[MAC].stage == "seeding"
    assert registry.clients[MAC].progress == 1.0
    assert seen.new == [MAC]


def test_a_failure_report_keeps_its_error_on_one_line():
    changes = validate_report({"stage": "failed", "error": "aria2c:\n\x1b[31mhash\tmismatch"})

    assert changes == {"stage": "failed", "error": "aria2c: [31mhash mismatch"}


def test_an_empty_report_is_a_sign_of_life(registry, clock):
    registry.report(MAC, {})
    clock.now += 1

    assert registry.report(MAC, {}).last_seen == clock.now


@pytest.mark.parametrize(("payload", "field"), [
    ([], "object"),
    ("stage=downloading", "object"),
    (None, "object"),
    (42, "object"),
    ({"stage": "downloading", "speed": 5}, "speed"),
    ({"mac": MAC}, "mac"),
    ({"stage": "exploded"}, "stage"),
    ({"stage": 3}, "stage"),
    ({"stage": ["failed"]}, "stage"),
    ({"stage": None}, "stage"),
    ({"progress": 1.5}, "progress"),
    ({"progress": -0.1}, "progress"),
    ({"progress": "0.5"}, "progress"),
    ({"progress": True}, "progress"),
    ({"progress": float("nan")}, "progress"),
    ({"progress": float("inf")}, "progress"),
    ({"downloaded_bytes": -1}, "downloaded_bytes"),
    ({"uploaded_bytes": 1.5}, "uploaded_bytes"),
    ({"down_rate": "fast"}, "down_rate"),
    ({"up_rate": None}, "up_rate"),
    ({"peers": True}, "peers"),
    ({"peers": 2**63}, "peers"),
    ({"os": "../etc"}, "os"),
    ({"os": "Debian 12"}, "os"),
    ({"os": 12}, "os"),
    ({"error": 404}, "error"),
    ({"error": "x" * 501}, "error"),
    ({"stage": "failed"}, "error"),
    ({"stage": "failed", "error": ""}, "error"),
    ({"stage": "failed", "error": " \n "}, "error"),
    ({"progress": 0.5, "peers": -3}, "peers"),
])
def test_a_malformed_report_is_refused_naming_the_field_and_changes_nothing(
    registry, payload, field
):
    registry.lease("add", MAC, "10.0.0.50", None)
    registry.report(MAC, {"stage": "downloading", "progress": 0.2, "peers": 2})
    before = copy.deepcopy(registry.clients)
    seen = Recorder(registry)

    with pytest.raises(ValueError, match=field):
        registry.report(MAC, payload, ip="10.0.0.99")

    assert registry.clients == before
    assert (seen.new, seen.changes) == ([], [])


def test_a_malformed_report_from_an_unknown_machine_registers_nothing(registry):
    with pytest.raises(ValueError):
        registry.report(MAC, {"stage": "exploded"})
    with pytest.raises(ValueError):
        registry.report("not-a-mac", {})

    assert registry.clients == {}


def test_every_stage_is_accepted_in_a_report():
    for stage in STAGES:
        payload = {"stage": stage, "error": "x"} if stage == "failed" else {"stage": stage}
        assert validate_report(payload)["stage"] == stage


# --- change notifications --------------------------------------------------------------------


def test_on_change_names_the_changed_fields_only(registry, clock):
    registry.lease("add", MAC, "10.0.0.50", None)
    seen = Recorder(registry)
    clock.now += 1

    registry.report(MAC, {"stage": "downloading", "progress": 0.1, "peers": 0})

    assert seen.changes == [(MAC, {"stage", "progress", "last_seen"})]


def test_on_change_stays_quiet_when_nothing_changed(registry, clock):
    registry.lease("add", MAC, "10.0.0.50", "lab1")
    registry.report(MAC, {"stage": "downloading", "progress": 0.1})
    seen = Recorder(registry)
    clock.now += 1

    registry.report(MAC, {"stage": "downloading", "progress": 0.1})
    registry.report(MAC, {})
    registry.lease("old", MAC, "10.0.0.50", "lab1")
    registry.assign(MAC, "debian12")
    seen.changes.clear()
    registry.assign(MAC, "debian12")
    registry.unassign("52:54:00:99:99:99")

    assert seen.changes == []
    assert registry.clients[MAC].last_seen == clock.now


def test_a_failing_listener_does_not_stop_the_others(registry):
    def broken(client, fields):
        raise RuntimeError("listener bug")

    registry.lease("add", MAC, "10.0.0.50", None)
    registry.on_change.append(broken)
    seen = Recorder(registry)

    registry.http_seen(MAC, "10.0.0.50", "menu")

    assert registry.clients[MAC].stage == "menu"
    assert seen.changes == [(MAC, {"stage"})]


# --- assignments -----------------------------------------------------------------------------


def test_assignments_persist_across_registries_on_the_same_file(tmp_path):
    state = tmp_path / "state" / "clients.json"
    first = Registry(state)
    first.assign("52-54-00-12-34-56", "debian12")
    first.assign("52:54:00:00:00:02", "freedos")
    first.unassign("52:54:00:00:00:02")

    second = Registry(state)

    assert second.assignments == {MAC: "debian12"}
    assert json.loads(state.read_text())["assignments"] == {MAC: "debian12"}
    assert [p.name for p in state.parent.iterdir()] == ["clients.json"]


def test_assignments_saved_from_the_event_loop_reach_the_disk(tmp_path):
    state = tmp_path / "clients.json"

    async def main() -> None:
        registry = Registry(state)
        for n in range(20):
            registry.assign(MAC, f"os{n}")
        await registry.flush()

    asyncio.run(main())

    assert Registry(state).assignments == {MAC: "os19"}


def test_a_failed_save_is_reported_by_flush(tmp_path):
    state = tmp_path / "missing-parent-is-a-file" / "clients.json"
    state.parent.write_text("not a folder")

    async def main() -> None:
        registry = Registry(tmp_path / "ok.json")
        registry.state_file = state
        registry.assign(MAC, "debian12")
        await registry.flush()

    with pytest.raises(OSError, match="could not save"):
        asyncio.run(main())


def test_an_assignment_shows_on_the_client_and_notifies(registry):
    registry.lease("add", MAC, "10.0.0.50", None)
    seen = Recorder(registry)

    registry.assign(MAC, "debian12")
    assert registry.clients[MAC].assigned_os == "debian12"
    registry.unassign(MAC)

    assert registry.clients[MAC].assigned_os == ""
    assert seen.changes == [(MAC, {"assigned_os"}), (MAC, {"assigned_os"})]


def test_a_machine_assigned_before_it_is_seen_shows_its_assignment(registry):
    registry.assign(MAC, "debian12")

    registry.lease("add", MAC, "10.0.0.50", None)

    assert registry.clients[MAC].assigned_os == "debian12"


@pytest.mark.parametrize(("mac", "os"), [("nonsense", "debian12"), (MAC, "../x"), (MAC, "")])
def test_bad_assignments_are_refused(registry, mac, os):
    with pytest.raises(ValueError):
        registry.assign(mac, os)
    assert registry.assignments == {}


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"version": 1, "assign', b"\xff\xfe",
                                     b'{"version": 1, "assignments": []}'])
def test_an_unreadable_state_file_is_set_aside(tmp_path, caplog, content):
    state = tmp_path / "clients.json"
    state.write_bytes(content)

    registry = Registry(state)

    assert registry.assignments == {}
    [aside] = tmp_path.glob("clients.json.corrupt-*")
    assert aside.read_bytes() == content
    assert f"{state} is corrupt" in caplog.text


def test_bad_entries_in_the_state_file_are_skipped(tmp_path):
    state = tmp_path / "clients.json"
    state.write_text(json.dumps({"version": 1, "assignments": {
        "52-54-00-12-34-56": "debian12", "bogus": "freedos", "52:54:00:00:00:02": "../x",
    }}))

    assert Registry(state).assignments == {MAC: "debian12"}


# --- imaged machines -------------------------------------------------------------------------


def test_an_imaged_machine_is_remembered_across_restarts_until_it_is_assigned_again(
        registry, tmp_path, clock):
    registry.assign(MAC, "lab")
    registry.report(MAC, {"stage": "booted", "os": "lab", "imaged": True})

    assert registry.clients[MAC].imaged_os == "lab"
    again = Registry(tmp_path / "clients.json", clock=clock)
    assert again.imaged == {MAC: "lab"}
    again.lease("add", MAC, "10.0.0.50", None)
    assert again.clients[MAC].imaged_os == "lab"

    # Assigning the same OS again is how the operator asks for a new imaging.
    again.assign(MAC, "lab")
    assert again.imaged == {} and again.clients[MAC].imaged_os == ""
    assert Registry(tmp_path / "clients.json", clock=clock).imaged == {}


def test_an_imaged_report_must_say_true_or_false(registry):
    with pytest.raises(ValueError, match="imaged: expected true or false"):
        registry.report(MAC, {"stage": "booted", "os": "lab", "imaged": "yes"})
    assert registry.imaged == {}


def test_a_machine_reports_on_its_own_mac_only(registry):
    other = "52:54:00:00:00:99"
    registry.lease("add", MAC, "10.0.0.20", None)
    registry.lease("add", other, "10.0.0.21", None)

    with pytest.raises(PermissionError, match="leased to 52:54:00:00:00:99"):
        registry.report(MAC, {"stage": "failed", "error": "forged"}, ip="10.0.0.21")

    assert registry.clients[MAC].stage == "dhcp" and registry.clients[MAC].error == ""
    assert registry.report(MAC, {"stage": "phase1"}, ip="10.0.0.20").stage == "phase1"
    # An address our DHCP did not lease (proxyDHCP, a static one) cannot be checked.
    assert registry.report(MAC, {"progress": 0.5}, ip="10.9.9.9").progress == 0.5
    # Once its lease is gone, the address belongs to nobody we know.
    registry.lease("del", other, "10.0.0.21", None)
    assert registry.report(MAC, {"progress": 0.6}, ip="10.0.0.21").progress == 0.6
