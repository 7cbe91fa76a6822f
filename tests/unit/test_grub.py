"""GRUB's config (UEFI machines on the signed chain): every machine's boot plan in one file."""

from boottorrentd.boot.grub import grub_config
from boottorrentd.boot.render import NOT_BUILT_PAUSE
from boottorrentd.config import BootSection, ClientSection, Config
from tests.unit.bootplans import OSS, OTHER, SERVER, commands


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


def test_an_imaged_machine_gets_a_grub_branch_that_leaves_grub_for_its_disk():
    config = Config(boottorrent=BootSection(timeout=30))
    text = grub_config(OSS, {}, config, server=SERVER, phase1_ready=True,
                       imaged={OTHER: "memtest"})
    lines = [line.strip() for line in text.splitlines()]

    start = lines.index(f'if [ "${{net_default_mac}}" = {OTHER} ]; then')
    branch = lines[start:lines.index("else")]
    assert branch[-1] == "exit" and not any("linux" in line for line in branch)
