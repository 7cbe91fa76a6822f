"""UEFI and Secure Boot: OVMF machines boot from the firmware's own PXE through the signed
chain (shim → GRUB → the Debian-signed phase-1 kernel), beside a BIOS machine, and run an
OS in QEMU with the QEMU initramfs GRUB loads after phase-1's; by UEFI HTTP Boot, the same
chain over HTTP where GRUB can (Debian 13's), else iPXE."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from boottorrentd.boot.loaders import GRUB, grub_http_boot
from boottorrentd.phase1.qemu import QEMU_IMAGE
from boottorrentlab.lab import VM, Lab, LabConfig
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import BOOT_TIMEOUT, timing_line
from tests.packaging.container import ARCHIVES, Container

# What GRUB prints under its menu while the timeout runs.
GRUB_MENU = "The highlighted entry will be executed automatically"
SIGNATURE_ERROR = ("Secure Boot is on and unsigned's kernel is not signed by a trusted key: "
                   "sign it, enroll its key with MOK, or use a signed distribution kernel")


def _grub_config(lab: Lab) -> str:
    """The GRUB config the UEFI machines fetch over TFTP."""
    server = lab.net.host_ip
    return lab.net.server.run("curl", "-sSf", f"tftp://{server}/grub/grub.cfg").stdout


def _plain(text: str) -> str:
    # OVMF and GRUB draw with terminal escapes; the words are what matter here.
    return re.sub(r"\x1b\[[0-9;=?]*[A-Za-z]", " ", text)


@pytest.fixture(scope="module")
def http_grub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signed GRUB that boots by UEFI HTTP Boot: this host's where it can (Debian 13),
    else Debian 13's, downloaded through the packaging tests' trixie root."""
    if grub_http_boot(GRUB):
        return GRUB
    container = Container.fresh("grub-http")
    try:
        container.download("grub-efi-amd64-signed")
    finally:
        shutil.rmtree(container.root, ignore_errors=True)
    out = tmp_path_factory.mktemp("grub")
    for deb in sorted(ARCHIVES.glob("grub-efi-amd64-signed_*.deb"), reverse=True):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
        image = out / GRUB.relative_to("/")
        if grub_http_boot(image):
            return image
    raise AssertionError(f"no grub-efi-amd64-signed in {ARCHIVES} has GRUB's HTTP boot")


def test_bios_uefi_and_secure_boot_machines_boot_the_same_os_from_one_swarm(make_lab, oses):
    a, b = oses["kexec-a"], oses["kexec-b"]
    # A menu with a timeout whose default is not the first entry; the UEFI machine is
    # assigned, the Secure Boot one takes the menu's default.
    lab = make_lab(LabConfig(timeout=3, default_os=a.name, seed_time=5))
    lab.add_os(b.name, b.folder)
    lab.add_os(a.name, a.folder)
    lab.start_session()
    bios, uefi, secure = (lab.add_vm(fw) for fw in ("bios", "uefi", "secureboot"))
    lab.ctl("assign", uefi.mac, a.name)
    grub = _grub_config(lab)
    branch = grub[grub.index(uefi.mac):grub.index("else")]
    assert "menuentry" not in branch and f"boottorrent.os={a.name}" in branch
    assert "set timeout=3" in grub and f"set default={a.name}" in grub
    for vm in (bios, uefi, secure):
        lab.power_on(vm)

    outcome = lab.wait([bios, uefi, secure], marker=a.marker, timeout=BOOT_TIMEOUT + 180)

    assert outcome.ok, outcome.problems
    assert all(vm.record["os"] == a.name for vm in (bios, uefi, secure))
    consoles = {vm.firmware: _plain(vm.console_text()) for vm in (bios, uefi, secure)}
    for firmware in ("uefi", "secureboot"):
        # The firmware's own PXE loaded shim, and shim GRUB.
        assert "NBP filename is shimx64.efi" in consoles[firmware], firmware
        assert "Welcome to GRUB" in consoles[firmware], firmware
    assert GRUB_MENU not in consoles["uefi"]  # assigned: no menu
    assert GRUB_MENU in consoles["secureboot"]  # the menu, then its default
    # The OS's kernel itself runs locked down: Secure Boot held through kexec.
    secure_text = consoles["secureboot"]
    assert re.search(rf"{a.name}: lockdown .*\[integrity\]", secure_text), secure_text[-2000:]
    assert not re.search(rf"{a.name}: lockdown .*\[none\]", secure_text)
    assert re.search(rf"{a.name}: lockdown .*\[none\]", consoles["uefi"])
    # One swarm: every machine fetched the same torrent.
    assert len({vm.record.get("os") for vm in (bios, uefi, secure)}) == 1
    for vm in (bios, uefi, secure):
        TIMINGS.append(timing_line(f"firmware {vm.firmware}", vm))


def test_an_unsigned_kernel_on_a_secure_boot_machine_fails_with_the_reason(make_lab, oses):
    target = oses["unsigned"]
    lab = make_lab(LabConfig(default_os=target.name, seed_time=0))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    vm = lab.add_vm("secureboot")
    lab.power_on(vm)

    lab.wait_for(lambda: vm.stage == "failed", BOOT_TIMEOUT + 60, "the client to report failed")

    listed = {c["mac"]: c for c in json.loads(lab.ctl("clients", "--json").stdout)}
    assert listed[vm.mac]["error"] == SIGNATURE_ERROR
    assert target.marker not in vm.console_text()
    TIMINGS.append(timing_line("secureboot, unsigned kernel", vm))


def _http_boot(make_lab, target, firmware: str, **boot: str) -> tuple[Lab, VM, str]:
    """One machine of `firmware` (PXE off) boots `target` by UEFI HTTP Boot, with the
    `boot` section's keys; the lab, the machine and its plain console."""
    lab = make_lab(LabConfig(default_os=target.name, seed_time=0,
                             extra={"boot": boot} if boot else {}))
    lab.add_os(target.name, target.folder)
    lab.start_session()
    (vm,) = lab.boot(1, firmware)

    outcome = lab.wait([vm], marker=target.marker, timeout=BOOT_TIMEOUT + 60)

    assert outcome.ok, outcome.problems
    console = _plain(vm.console_text())
    assert "NBP filename" not in console  # no PXE on the way
    return lab, vm, console


def test_a_uefi_http_boot_machine_gets_the_loaders_url_and_boots(make_lab, oses):
    # This host's GRUB decides: shim and GRUB where it boots by HTTP, else iPXE.
    loader = "shimx64.efi" if grub_http_boot(GRUB) else "snponly.efi"
    lab, vm, console = _http_boot(make_lab, oses["kexec-a"], "httpboot")

    assert f"http://{lab.server}/uefi/{loader}" in console, console[:3000]
    TIMINGS.append(timing_line("UEFI HTTP Boot", vm))


def test_a_secure_boot_machine_boots_by_uefi_http_boot_through_shim_and_grub(make_lab, oses,
                                                                             http_grub):
    target = oses["kexec-a"]
    # Secure Boot enforced and PXE off: only the signed chain over HTTP can boot it.
    lab, vm, console = _http_boot(make_lab, target, "securehttpboot",
                                  grub_image=str(http_grub))

    assert f"http://{lab.server}/uefi/shimx64.efi" in console, console[:3000]
    # GRUB read its config over HTTP (these are its words) and loaded phase-1 from there.
    assert re.search(rf"BootTorrent: starting .*\({target.name}\)", console), console[:5000]
    assert "BOOT_IMAGE=/phase1/vmlinuz" in console
    # The OS's kernel runs locked down: Secure Boot held from shim through kexec.
    assert re.search(rf"{target.name}: lockdown .*\[integrity\]", console), console[-2000:]
    TIMINGS.append(timing_line("secure UEFI HTTP Boot", vm))


def test_a_secure_boot_machine_runs_a_qemu_os_with_the_qemu_initramfs_grub_loads(make_lab,
                                                                                  oses):
    target = oses["qemu"]
    # phase-1, QEMU's initramfs and the VM in one machine's memory.
    lab = make_lab(LabConfig(default_os=target.name, seed_time=0), memory_mb=1024)
    lab.start_session()
    # The daemon builds phase-1's QEMU flavour for the first OS of method qemu, and the
    # UEFI machines' GRUB config follows once it is there.
    lab.add_os(target.name, target.folder)
    lab.wait_for(lambda: f"initrd /phase1/initrd.img /phase1/{QEMU_IMAGE}" in _grub_config(lab),
                 300, "GRUB's config to load QEMU's initramfs once the daemon built it")
    vm = lab.add_vm("secureboot")
    lab.power_on(vm)

    outcome = lab.wait([vm], marker=target.marker, timeout=BOOT_TIMEOUT + 180)

    assert outcome.ok, outcome.problems
    console = _plain(vm.console_text())
    assert "NBP filename is shimx64.efi" in console and "Welcome to GRUB" in console
    # Phase-1 ran QEMU from the flavour, and the VM's firmware booted the OS's disk.
    assert "running qemu-system-x86_64" in console and "SeaBIOS" in console, console[-3000:]
    assert vm.stage == "running" and vm.exit_code is None
    TIMINGS.append(timing_line("secureboot, qemu OS", vm))
