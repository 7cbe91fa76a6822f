"""The boot plan: what a machine boots, decided without sockets."""

import pytest

from boottorrentd.boot.plan import BootPlan, MenuItem, plan_boot
from boottorrentd.util.mac import normalize_mac
from tests.unit.bootplans import MAC, OSS, OTHER, cfg, plan, script

# --- MAC addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456",
])
def test_mac_addresses_normalize_to_lower_case_colons(text):
    assert normalize_mac(text) == MAC


def test_normalize_mac_lowercases_hex_letters():
    assert normalize_mac("AA-BB-CC-DD-EE-FF") == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("text", [
    "", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54-00:12:34:56", "52.54.00.12.34.56",
    "5254001234567", "52:54:00:12:34:5g", " 52:54:00:12:34:56", "52:54:00:12:34:56\n",
    "${net0/mac}", "../../etc/passwd", 525400123456,
])
def test_anything_else_is_not_a_mac(text):
    with pytest.raises(ValueError, match="not a MAC address"):
        normalize_mac(text)


# --- the rules -------------------------------------------------------------------------------


def test_an_assigned_machine_boots_its_os_directly_whatever_the_menu_says():
    p = plan(assignments={MAC: "freedos"}, timeout=30, default_os="debian12")

    assert (p.kind, p.os, p.default) == ("direct", "freedos", "freedos")
    assert p.items == (MenuItem("freedos", "FreeDOS"),)
    assert "assigned" in p.reason


def test_an_imaged_machine_boots_from_its_disk_whatever_it_is_assigned():
    p = plan_boot(MAC, OSS, {MAC: "freedos"}, cfg(timeout=30), {MAC: "freedos"})

    assert (p.kind, p.os) == ("local", "freedos")
    assert "assigned again" in p.reason
    lines = [line for line in script(p).splitlines() if not line.startswith("#")]
    assert "sanboot --no-describe --drive 0x80 ||" in lines
    assert "iseq ${platform} efi && exit ||" in lines
    assert not any("phase1" in line for line in lines)


def test_an_assignment_is_looked_up_by_the_normalized_mac():
    p = plan(mac="52-54-00-12-34-56", assignments={MAC: "memtest"})

    assert (p.mac, p.kind, p.os) == (MAC, "direct", "memtest")


def test_another_machines_assignment_does_not_apply():
    p = plan(assignments={OTHER: "freedos"}, timeout=30, default_os="debian12")

    assert p.kind == "menu"


def test_an_assignment_to_an_os_no_longer_in_the_library_falls_back_to_the_menu():
    p = plan(assignments={MAC: "gone"}, timeout=30, default_os="debian12")

    assert p.kind == "menu"
    assert "gone is not in the library" in p.reason


def test_a_positive_timeout_shows_the_menu_then_boots_the_default():
    p = plan(timeout=30, default_os="freedos")

    assert p == BootPlan(
        mac=MAC, kind="menu",
        items=(MenuItem("debian12", "Debian 12"), MenuItem("freedos", "FreeDOS"),
               MenuItem("memtest", "Memtest86+")),
        default="freedos", timeout=30, os=None, reason=p.reason,
    )


def test_timeout_zero_boots_the_default_at_once():
    p = plan(timeout=0, default_os="freedos")

    assert (p.kind, p.os, p.default) == ("direct", "freedos", "freedos")
    assert "timeout is 0" in p.reason


def test_a_negative_timeout_waits_forever_with_the_default_preselected():
    p = plan(timeout=-1, default_os="freedos")

    assert (p.kind, p.default, p.timeout, p.os) == ("menu", "freedos", -1, None)


def test_a_negative_timeout_needs_no_default():
    p = plan(timeout=-5)

    assert (p.kind, p.default) == ("menu", None)
    assert "first shown" not in p.reason


def test_display_oss_chooses_and_orders_the_menu_skipping_names_not_in_the_library():
    p = plan(timeout=10, display_oss=("memtest", "windows", "debian12"), default_os="debian12")

    assert [item.name for item in p.items] == ["memtest", "debian12"]
    assert "windows" in p.reason


def test_every_library_os_shows_in_library_order_when_display_oss_is_unset():
    oss = {"zeta": "Zeta", "alpha": "Alpha"}
    p = plan(oss=oss, timeout=10, default_os="alpha")

    assert [item.name for item in p.items] == ["zeta", "alpha"]


@pytest.mark.parametrize(("boot", "why"), [
    ({}, "default_os is not set"),
    ({"default_os": "gone"}, "default_os gone is not in the library"),
])
def test_without_a_usable_default_the_first_shown_os_is_the_default(boot, why):
    p = plan(timeout=10, display_oss=("freedos", "debian12"), **boot)

    assert (p.kind, p.default) == ("menu", "freedos")
    assert why in p.reason
    assert "first shown OS, freedos" in p.reason


def test_a_default_that_is_not_shown_falls_back_too():
    # The config refuses this combination, but a plan must not depend on that.
    p = plan(timeout=0, display_oss=("freedos",), default_os="debian12")

    assert (p.kind, p.os) == ("direct", "freedos")
    assert "default_os debian12 is not shown" in p.reason


def test_timeout_zero_without_a_default_boots_the_first_shown_os():
    p = plan(timeout=0, display_oss=("memtest", "freedos"))

    assert (p.kind, p.os) == ("direct", "memtest")
    assert "first shown OS, memtest" in p.reason


def test_an_empty_library_plans_nothing_and_says_how_to_add_an_os():
    p = plan(oss={}, timeout=10)

    assert (p.kind, p.items, p.os, p.default) == ("none", (), None, None)
    assert "boottorrentctl add-os" in p.reason


def test_display_oss_naming_only_absent_oses_plans_nothing():
    p = plan(timeout=10, display_oss=("windows", "macos"))

    assert p.kind == "none"
    assert "windows, macos" in p.reason


def test_a_bad_mac_is_refused():
    with pytest.raises(ValueError):
        plan(mac="not-a-mac")
