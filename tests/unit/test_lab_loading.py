"""boottorrentctl loads the lab (QEMU, namespaces, the demo OS builder) only for `lab`;
the lab's machines by firmware."""

import subprocess
import sys
from pathlib import Path

from boottorrentctl.cli import build_parser
from boottorrentlab.lab.machines import VM, qemu_command


def test_importing_the_cli_does_not_import_the_lab():
    # A fresh interpreter: this one may have imported the lab for other tests.
    probe = ("import sys, boottorrentctl.cli; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'boottorrentlab'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_the_command_list_names_the_lab():
    assert "lab" in build_parser().format_help()


def test_lab_help_is_the_labs_own_parser_with_all_its_options():
    result = subprocess.run([sys.executable, "-m", "boottorrentctl.cli", "lab", "--help"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: boottorrentctl lab")
    for option in ("--clients", "--os", "--marker", "--keep", "--timeout", "--memory",
                   "--seed-time", "--phase1", "--rebuild-phase1", "--firmware"):
        assert option in result.stdout, option


def test_ovmf_machines_boot_the_firmwares_own_pxe_and_secure_boot_ones_lock_their_keys():
    def command(firmware: str) -> str:
        vm = VM(1, "52:54:00:b7:00:01", "tap1", Path("/lab/vm1-console.log"),
                Path("/lab/vm1.sock"), firmware=firmware)
        return " ".join(qemu_command(vm, 512))

    bios, uefi, secure = command("bios"), command("uefi"), command("secureboot")
    assert "pflash" not in bios and "romfile=" not in bios  # SeaBIOS with the NIC's iPXE
    assert "OVMF_CODE_4M.fd" in uefi and "file=/lab/vm1-vars.fd" in uefi
    assert "mac=52:54:00:b7:00:01,romfile=" in uefi and "smm=on" not in uefi
    assert "OVMF_CODE_4M.secboot.fd" in secure and "q35,smm=on" in secure
    assert "driver=cfi.pflash01,property=secure,value=on" in secure
    assert "IPv4PXESupport,string=n" in command("httpboot")
    secure_http = command("securehttpboot")
    assert "IPv4PXESupport,string=n" in secure_http and "OVMF_CODE_4M.secboot.fd" in secure_http
    assert "driver=cfi.pflash01,property=secure,value=on" in secure_http
