"""The boot plan: what a machine boots, decided without sockets, and its renderings."""

import re
from pathlib import Path

import pytest

from boottorrentd.boot.bootspec import boot_json
from boottorrentd.boot.grub import grub_config
from boottorrentd.boot.ipxe import render_chain, render_ipxe
from boottorrentd.boot.plan import BootPlan, MenuItem, plan_boot
from boottorrentd.boot.render import NOT_BUILT_PAUSE, ipxe_text
from boottorrentd.config import Aria2Section, BootSection, ClientSection, Config, TrackerSection
from boottorrentd.library.osspec import OSSpec
from boottorrentd.library.store import OSEntry
from boottorrentd.library.torrent import TorrentFile, TorrentInfo
from boottorrentd.util.mac import normalize_mac

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:ab:cd:ef"
SERVER = "192.168.1.1:8080"
# name -> dispname, in library order
OSS = {"debian12": "Debian 12", "freedos": "FreeDOS", "memtest": "Memtest86+"}


def cfg(**boot: object) -> Config:
    return Config(boottorrent=BootSection(**boot))  # type: ignore[arg-type]


def plan(*, assignments: dict[str, str] | None = None, oss: dict[str, str] | None = None,
         mac: str = MAC, **boot: object) -> BootPlan:
    return plan_boot(mac, OSS if oss is None else oss, assignments or {}, cfg(**boot))


def script(p: BootPlan, **kw: object) -> str:
    return render_ipxe(p, server=SERVER, phase1_ready=kw.pop("phase1_ready", True),  # type: ignore[arg-type]
                       qemu_ready=kw.pop("qemu_ready", True), **kw)  # type: ignore[arg-type]


def commands(text: str) -> list[str]:
    """The script's lines minus comments, as iPXE would run them."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


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


def test_an_os_run_in_qemu_gets_the_qemu_initramfs_after_phase1s_and_others_do_not():
    menu = plan(timeout=30, default_os="debian12")

    lines = script(menu, qemu_oss=["freedos"]).splitlines()

    freedos = lines[lines.index(":freedos"):lines.index(":memtest")]
    qemu = f"initrd http://{SERVER}/phase1/qemu.img || goto _bt_failed"
    assert freedos.index(qemu) == freedos.index(
        f"initrd http://{SERVER}/phase1/initrd.img || goto _bt_failed") + 1
    assert lines.count(qemu) == 1


def test_without_the_qemu_flavour_ipxe_says_so_for_qemu_oses_and_boots_the_others():
    lines = script(plan(timeout=30, default_os="debian12"), qemu_oss=["freedos"],
                   qemu_ready=False).splitlines()

    freedos = lines[lines.index(":freedos"):lines.index(":memtest")]
    assert not any(line.startswith(("kernel", "initrd")) for line in freedos)
    said = " ".join(freedos)
    # The words GRUB's config and the boot HTTP server's reason for qemu.img use.
    assert "runs in QEMU, and the QEMU flavour of phase-1 is not built, the server" in said
    assert "build it now with: boottorrentctl build-client" in said
    assert freedos[-2:] == [f"sleep {NOT_BUILT_PAUSE}", "exit"]
    assert f"initrd http://{SERVER}/phase1/initrd.img || goto _bt_failed" in lines
    assert not any("qemu.img" in line for line in lines)


def test_an_imaged_machine_boots_from_its_disk_even_before_phase1_is_built():
    p = plan_boot(MAC, OSS, {}, cfg(), {MAC: "freedos"})

    assert "sanboot --no-describe --drive 0x80 ||" in script(p, phase1_ready=False)


def test_an_imaged_machine_gets_a_grub_branch_that_leaves_grub_for_its_disk():
    config = Config(boottorrent=BootSection(timeout=30))
    text = grub_config(OSS, {}, config, server=SERVER, phase1_ready=True,
                       imaged={OTHER: "memtest"})
    lines = [line.strip() for line in text.splitlines()]

    start = lines.index(f'if [ "${{net_default_mac}}" = {OTHER} ]; then')
    branch = lines[start:lines.index("else")]
    assert branch[-1] == "exit" and not any("linux" in line for line in branch)


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


# --- iPXE scripts ----------------------------------------------------------------------------


def test_the_chain_script_fetches_the_machines_own_script_by_mac():
    text = render_chain(SERVER)

    assert text.startswith("#!ipxe\n")
    assert commands(text) == [f"chain http://{SERVER}/boot/${{net0/mac}}.ipxe"]


def test_a_menu_lists_the_items_and_times_out_in_milliseconds():
    text = script(plan(timeout=30, default_os="freedos"))
    lines = commands(text)

    assert text.startswith("#!ipxe\n")
    assert "item debian12 Debian 12" in lines
    assert "item freedos FreeDOS" in lines
    assert "item memtest Memtest86+" in lines
    choose = next(line for line in lines if line.startswith("choose "))
    assert "--timeout 30000" in choose
    assert "--default freedos" in choose
    assert "target && goto ${target}" in choose
    # Every item has its label to go to.
    for name in OSS:
        assert f":{name}" in lines


def test_a_menu_that_waits_forever_has_no_timeout():
    lines = commands(script(plan(timeout=-1, default_os="freedos")))
    choose = next(line for line in lines if line.startswith("choose "))

    assert "--timeout" not in choose
    assert "--default freedos" in choose


def test_a_menu_without_default_has_no_default_option():
    lines = commands(script(plan(timeout=-1)))
    choose = next(line for line in lines if line.startswith("choose "))

    assert "--default" not in choose


def test_a_direct_boot_loads_phase1_with_the_os_on_the_kernel_command_line():
    lines = commands(script(plan(assignments={MAC: "freedos"}), cmdline_extra="console=ttyS0"))

    assert not any(line.startswith(("menu", "item", "choose")) for line in lines)
    kernel = next(line for line in lines if line.startswith("kernel "))
    assert kernel.startswith(f"kernel http://{SERVER}/phase1/vmlinuz initrd=initrd.img "
                             f"boottorrent.server={SERVER} boottorrent.os=freedos "
                             "boottorrent.mac=${net0/mac} console=ttyS0")
    assert any(line.startswith(f"initrd http://{SERVER}/phase1/initrd.img") for line in lines)
    assert any(line.startswith("boot") for line in lines)
    # Loading comes before anything that would drop to a shell or exit.
    assert lines.index(kernel) < min(i for i, line in enumerate(lines) if line == "exit")


def test_extra_cmdline_cannot_inject_commands():
    text = script(plan(timeout=0, default_os="debian12"),
                  cmdline_extra="quiet\nchain http://evil/x\r")

    assert not any(line.startswith("chain") for line in text.splitlines())
    assert "boottorrent.mac=${net0/mac} quiet chain http://evil/x ||" in text


def test_without_the_phase1_image_the_script_says_how_to_build_it_and_exits():
    lines = commands(script(plan(timeout=30, default_os="freedos"), phase1_ready=False))

    assert any("not built" in line for line in lines)
    assert any("boottorrentctl build-client" in line for line in lines)
    assert any(line.startswith("sleep ") for line in lines)
    assert lines[-1] == "exit"
    assert not any(line.startswith(("kernel", "menu", "choose")) for line in lines)


def test_nothing_to_boot_prints_why_and_drops_to_the_shell_after_a_pause():
    lines = commands(script(plan(oss={}, timeout=10)))

    assert lines[0].startswith("echo ") and "library is empty" in lines[0]
    assert lines[-1] == "shell"
    assert lines[-2].startswith("sleep ")
    assert not any(line.startswith("kernel") for line in lines)


@pytest.mark.parametrize("label", [
    "Evil\nchain http://evil/x",
    "Debian ${net0/mac} ${unknown}",
    "A #comment && reboot || shell ; reboot",
    'Quote "this" \'and\' back\\slash',
    "Tab\there\r\x1b[31mred",
])
def test_labels_cannot_break_the_script(label):
    p = plan(oss={"debian12": label, "freedos": "FreeDOS"}, timeout=10, default_os="freedos")
    lines = script(p).splitlines()

    item = next(line for line in lines if line.startswith("item debian12 "))
    text = item.removeprefix("item debian12 ")
    assert re.fullmatch(r"[A-Za-z0-9 _.,:!?()\[\]+=@%*~<>/^-]+", text)
    assert "${" not in text and "&&" not in text and "||" not in text
    assert not any(line.startswith("chain") for line in lines)


def test_labels_keep_their_readable_text():
    assert ipxe_text("Debian 12 (Bookworm) ${x}") == "Debian 12 (Bookworm) x"
    assert ipxe_text("Fedora \u00e9t\u00e9 / Caf\u00e9") == "Fedora ete / Cafe"
    assert ipxe_text("${}") == ""


def test_a_label_with_nothing_left_shows_the_os_name():
    p = plan(oss={"debian12": "${}", "freedos": "FreeDOS"}, timeout=10)

    assert "item debian12 debian12" in script(p).splitlines()


def test_the_reason_in_the_script_cannot_inject_commands():
    # display_oss names only need to be free of '/' and control characters.
    p = plan(timeout=10, display_oss=("x${y}", "&&", "#z"))
    lines = commands(script(p))

    assert p.kind == "none"
    assert all(line.startswith(("echo ", "sleep ", "shell")) for line in lines)
    assert not any("${" in line or "&&" in line or ";" in line for line in lines)


# --- GRUB (UEFI machines on the signed chain) --------------------------------------------


def grub(assignments: dict[str, str] | None = None, oss: dict[str, str] | None = None,
         phase1_ready: bool = True, extra: str = "", qemu_oss: tuple[str, ...] = (),
         qemu_ready: bool = True, **boot: object) -> str:
    config = Config(boottorrent=BootSection(**boot),  # type: ignore[arg-type]
                    client=ClientSection(extra_cmdline=extra))
    return grub_config(OSS if oss is None else oss, assignments or {}, config, server=SERVER,
                       phase1_ready=phase1_ready, qemu_oss=qemu_oss, qemu_ready=qemu_ready)


def grub_commands(text: str) -> list[str]:
    return [line.strip() for line in commands(text) if not line.strip().startswith("#")]


def test_a_grub_menu_has_one_entry_per_os_the_default_and_the_timeout_in_seconds():
    lines = grub_commands(grub(timeout=30, default_os="freedos"))

    assert "set timeout=30" in lines and "set default=freedos" in lines
    entries = [line for line in lines if line.startswith("menuentry ")]
    assert entries == ["menuentry 'Debian 12' --id debian12 {",
                       "menuentry 'FreeDOS' --id freedos {",
                       "menuentry 'Memtest86+' --id memtest {"]
    # No machine has an assignment: no branch by MAC.
    assert not any(line.startswith("if [") for line in lines)


def test_a_grub_menu_that_waits_forever_has_timeout_minus_one():
    lines = grub_commands(grub(timeout=-1))

    assert "set timeout=-1" in lines
    assert not any(line.startswith("set default=") for line in lines)


def test_phase1_loads_over_tftp_with_the_server_os_and_the_mac_grub_booted_from():
    lines = grub_commands(grub(timeout=0, default_os="freedos", extra="console=ttyS0"))

    linux = next(line for line in lines if line.startswith("if linux "))
    assert linux == (f"if linux /phase1/vmlinuz 'boottorrent.server={SERVER}' "
                     "'boottorrent.os=freedos' \"boottorrent.mac=${net_default_mac}\" "
                     "'console=ttyS0'; then")
    assert "if initrd /phase1/initrd.img; then" in lines
    assert lines.index(linux) < lines.index("boot") < lines.index("exit")
    assert not any(line.startswith(("menuentry", "set timeout")) for line in lines)


def test_an_assigned_machine_gets_its_own_grub_branch_without_the_menu():
    text = grub({OTHER: "memtest"}, timeout=30, default_os="freedos")
    lines = [line.rstrip() for line in text.splitlines()]

    start = lines.index(f'if [ "${{net_default_mac}}" = {OTHER} ]; then')
    middle, end = lines.index("else"), lines.index("fi")
    assigned, others = lines[start:middle], lines[middle:end]
    assert not any("menuentry" in line for line in assigned)
    assert any(f"'boottorrent.os=memtest' \"boottorrent.mac={OTHER}\"" in line
               for line in assigned)
    assert sum("menuentry" in line for line in others) == 3
    assert any("set default=freedos" in line for line in others)


def test_grub_labels_and_extra_cmdline_cannot_break_out_of_their_quotes():
    oss = {"evil": "x' ; reboot ; echo '$(y)\nboot"}
    text = grub(oss=oss, timeout=5, default_os="evil", extra="quiet $root 'a")

    entry = next(line for line in text.splitlines() if line.startswith("menuentry "))
    assert entry == "menuentry 'x , reboot , echo (y) boot' --id evil {"
    assert not any(line.strip() in ("reboot", "boot'") for line in text.splitlines())
    # Single-quoted: GRUB expands no variable the admin wrote.
    assert "'quiet' '$root' ''\\''a'" in text


def test_without_the_phase1_image_grub_says_how_to_build_it_and_exits():
    lines = grub_commands(grub(timeout=30, default_os="freedos", phase1_ready=False))

    assert any("boottorrentctl build-client" in line for line in lines)
    assert lines[-1] == "exit" and not any("linux" in line for line in lines)


def menu_entry(lines: list[str], name: str) -> list[str]:
    """The commands of the GRUB menu entry of OS `name`."""
    start = next(i for i, line in enumerate(lines) if line.endswith(f"--id {name} {{"))
    return lines[start:lines.index("}", start)]


def test_an_os_run_in_qemu_gets_qemus_initramfs_after_phase1s_in_grub_and_others_do_not():
    lines = grub_commands(grub(timeout=30, default_os="debian12", qemu_oss=("freedos",)))

    assert "if initrd /phase1/initrd.img /phase1/qemu.img; then" in menu_entry(lines, "freedos")
    for other in ("debian12", "memtest"):
        assert "if initrd /phase1/initrd.img; then" in menu_entry(lines, other)
    assert sum("qemu.img" in line for line in lines) == 1


def test_an_assigned_machine_gets_qemus_initramfs_for_its_qemu_os_in_grub():
    text = grub({OTHER: "freedos"}, timeout=30, qemu_oss=("freedos",))
    lines = [line.strip() for line in text.splitlines()]

    assigned = lines[lines.index(f'if [ "${{net_default_mac}}" = {OTHER} ]; then'):
                     lines.index("else")]
    assert "if initrd /phase1/initrd.img /phase1/qemu.img; then" in assigned


def test_without_the_qemu_flavour_grub_says_so_for_qemu_oses_and_boots_the_others():
    lines = grub_commands(grub(timeout=30, default_os="debian12", qemu_oss=("freedos",),
                               qemu_ready=False))

    freedos = menu_entry(lines, "freedos")
    assert not any(line.startswith(("if linux", "if initrd")) for line in freedos)
    said = " ".join(freedos)
    # The words of the iPXE path (the boot HTTP server's reason for qemu.img).
    assert "runs in QEMU, and the QEMU flavour of phase-1 is not built; the server" in said
    assert "build it now with: boottorrentctl build-client" in said
    assert freedos[-2:] == [f"sleep {NOT_BUILT_PAUSE}", "exit"]
    assert "if initrd /phase1/initrd.img; then" in menu_entry(lines, "debian12")
    assert not any("qemu.img" in line for line in lines)


def test_nothing_to_boot_in_grub_says_why_and_leaves_the_grub_shell():
    lines = grub_commands(grub(oss={}))

    assert any("nothing to boot" in line and "add-os" in line for line in lines)
    assert "exit" not in lines and not any(line.startswith("menuentry") for line in lines)


# --- boot.json -------------------------------------------------------------------------------


def entry() -> OSEntry:
    spec = OSSpec("Debian 12", "kexec",
                  {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "quiet"})
    info = TorrentInfo("debian12", "ab" * 20, 262144,
                       (TorrentFile(("vmlinuz",), 1000), TorrentFile(("initrd.img",), 3000)))
    return OSEntry("debian12", Path("/var/lib/boottorrent/oss/debian12"), False, spec,
                   Path("/var/lib/boottorrent/torrents/debian12.torrent"), info)


def test_boot_json_of_an_image_os_gives_the_image_size_and_whether_disks_may_be_written():
    spec = OSSpec("Lab", "image", {"image": "img/disk.img.zst", "target": "largest",
                                   "after": "reboot"})
    info = TorrentInfo("lab", "cd" * 20, 262144,
                       (TorrentFile(("README",), 10), TorrentFile(("img", "disk.img.zst"), 5000)))
    image = OSEntry("lab", Path("/srv/lab"), False, spec, Path("/srv/lab.torrent"), info)
    allowed = Config(boottorrent=BootSection(), client=ClientSection(allow_disk_writes=True))

    doc = boot_json(image, allowed, server=SERVER)

    assert doc["image_bytes"] == 5000 and doc["allow_disk_writes"] is True
    assert "image_bytes" not in boot_json(entry(), allowed, server=SERVER)


def test_boot_json_holds_what_phase1_needs():
    config = Config(
        boottorrent=BootSection(seed_time=45),
        aria2=Aria2Section(bt_enable_lpd=True, console_log_level="warn"),
        tracker=TrackerSection(announce_interval=20),
        client=ClientSection(report_interval=2),
    )

    assert boot_json(entry(), config, server=SERVER) == {
        "name": "debian12",
        "dispname": "Debian 12",
        "spec": {"method": "kexec", "dispname": "Debian 12", "kernel": "vmlinuz",
                 "initrd": "initrd.img", "cmdline": "quiet"},
        "infohash": "ab" * 20,
        "size_bytes": 4000,
        "torrent_url": f"http://{SERVER}/torrents/debian12.torrent",
        "seed_time": 45,
        "aria2": {
            "bt-enable-lpd": "true",
            "enable-peer-exchange": "true",
            "enable-dht": "false",
            "enable-dht6": "false",
            "check-integrity": "true",
            "console-log-level": "warn",
            "bt-tracker-interval": "20",
        },
        "report_url": f"http://{SERVER}/api/v1/clients/{{mac}}/events",
        "report_interval": 2,
        "allow_disk_writes": False,
    }


# --- boot.env --------------------------------------------------------------------------------


def test_boot_env_renders_boot_json_as_single_quoted_shell_assignments():
    from boottorrentd.boot.bootspec import boot_env

    config = Config(boottorrent=BootSection(seed_time=45),
                    tracker=TrackerSection(announce_interval=20))
    text = boot_env(entry(), config, server=SERVER)
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert "BT_NAME='debian12'" in lines
    assert "BT_SPEC_KERNEL='vmlinuz'" in lines
    assert "BT_SPEC_CMDLINE='quiet'" in lines
    assert "BT_SEED_TIME='45'" in lines
    assert "BT_ARIA2_BT_TRACKER_INTERVAL='20'" in lines
    assert f"BT_TORRENT_URL='http://{SERVER}/torrents/debian12.torrent'" in lines
    assert any(line.startswith("BT_ARIA2_OPTS='--bt-enable-lpd=false ") for line in lines)
    assert all(re.fullmatch(r"BT_[A-Z0-9_]+='[^']*'", line) for line in lines[1:])


def test_boot_env_quotes_a_single_quote_in_a_value():
    from boottorrentd.boot.bootspec import boot_env

    spec = OSSpec("Bob's OS", "kexec", {"kernel": "vmlinuz", "initrd": "initrd.img",
                                        "cmdline": "a='b c'"})
    e = entry()
    e = OSEntry(e.name, e.path, e.linked, spec, e.torrent_path, e.torrent)
    lines = boot_env(e, Config(boottorrent=BootSection()), server=SERVER).splitlines()
    assert "BT_DISPNAME='Bob'\\''s OS'" in lines
    assert "BT_SPEC_CMDLINE='a='\\''b c'\\'''" in lines
