"""The lab's client machines: QEMU (TCG) PXE-booting from a tap on the lab's bridge.

Firmware: `bios` is SeaBIOS booting the virtio NIC's iPXE ROM; `uefi` is OVMF and
`secureboot` OVMF with Secure Boot enforced (Microsoft's keys enrolled, as on a PC),
both with the NIC's ROM off so that the firmware's own PXE runs, as on real hardware;
`httpboot` is OVMF with PXE off, booting by UEFI HTTP Boot, and `securehttpboot` the same
with Secure Boot enforced.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boottorrentlab.devkit.lan import Lan

from .config import QEMU, TARGET_STAGES

# Locally administered (QEMU's 52:54:00 range); the lab's LAN is private, so fixed MACs
# per machine number cannot clash with anything.
MAC_PREFIX = "52:54:00:b7:00"

FIRMWARES = ("bios", "uefi", "secureboot", "httpboot", "securehttpboot")
# --firmware mixed: one machine of each in turn.
MIXED = ("bios", "uefi", "secureboot")
OVMF_DIR = Path("/usr/share/OVMF")
# (code, variables template) of each OVMF firmware; the variables are copied per machine.
OVMF = {
    "uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "secureboot": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
    "httpboot": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "securehttpboot": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}


@dataclass
class VM:
    """One QEMU client machine and what the lab has seen of it."""

    index: int
    mac: str
    tap: str
    console: Path  # everything the machine wrote on its serial port
    socket: Path  # the serial port itself: connect to type into the machine's console
    process: subprocess.Popen | None = None
    started: float = 0.0  # time.monotonic() at power-on
    stage_times: dict[str, float] = field(default_factory=dict)  # first seen, since power-on
    record: dict[str, Any] = field(default_factory=dict)  # the daemon's client object
    peak_down: int = 0
    peak_up: int = 0
    marker_at: float | None = None  # seconds after power-on
    exit_code: int | None = None
    firmware: str = "bios"  # one of FIRMWARES
    disks: tuple[Path, ...] = ()  # raw disk image files, virtio disks in this order

    @property
    def name(self) -> str:
        return f"vm{self.index}"

    @property
    def stage(self) -> str:
        return str(self.record.get("stage") or "")

    @property
    def qemu_log(self) -> Path:
        return self.console.with_name(f"{self.name}-qemu.log")

    @property
    def vars_file(self) -> Path:
        """The machine's own UEFI variables (OVMF writes boot entries into them)."""
        return self.console.with_name(f"{self.name}-vars.fd")

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def console_text(self) -> str:
        try:
            return self.console.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def last_console_line(self) -> str:
        for line in reversed(self.console_text().splitlines()):
            text = "".join(ch for ch in line if ch.isprintable()).strip()
            if text:
                return text
        return ""

    def qemu_error(self) -> str:
        """The last line QEMU itself printed (why it would not start), if any."""
        try:
            lines = self.qemu_log.read_text().strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def reached_target(self) -> bool:
        return any(stage in self.stage_times for stage in TARGET_STAGES)

    def describe_stage(self) -> str:
        if self.stage:
            return self.stage
        return "power-on (firmware; no DHCP request seen yet)"

    def forget(self) -> None:
        """Drop what was seen of the machine: it is powered on again."""
        self.started = time.monotonic()
        self.stage_times.clear()
        self.record = {}
        self.marker_at = None
        self.exit_code = None
        self.peak_down = self.peak_up = 0


def new_vm(lan: Lan, index: int, workdir: Path, firmware: str = "bios",
           disks: tuple[Path, ...] = ()) -> VM:
    """Machine number `index` with its own tap on the lab's bridge (and `disks`)."""
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware {firmware!r}: expected one of {', '.join(FIRMWARES)}")
    return VM(index, f"{MAC_PREFIX}:{index:02x}", lan.add_tap(),
              workdir / f"vm{index}-console.log", workdir / f"vm{index}.sock",
              firmware=firmware, disks=tuple(disks))


def missing_firmware(firmware: str) -> str | None:
    """Why machines with `firmware` cannot start here (what to install), or None."""
    files = OVMF.get(firmware, ())
    if any(not (OVMF_DIR / name).is_file() for name in files):
        return f"{firmware} machines need OVMF in {OVMF_DIR}: apt-get install ovmf"
    return None


def _firmware_args(vm: VM) -> list[str]:
    if vm.firmware == "bios":
        return ["-device", f"virtio-net-pci,netdev=net0,mac={vm.mac}"]
    code, _ = OVMF[vm.firmware]
    args = []
    if vm.firmware in ("secureboot", "securehttpboot"):
        # OVMF keeps its variables (the Secure Boot keys among them) writable only from
        # SMM: without it, any program could turn Secure Boot off.
        args += ["-machine", "q35,smm=on",
                 "-global", "driver=cfi.pflash01,property=secure,value=on"]
    else:
        args += ["-machine", "q35"]
    if vm.firmware in ("httpboot", "securehttpboot"):
        # PXE off (OVMF's knobs): the firmware boots by UEFI HTTP Boot alone.
        args += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
                 "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]
    return [
        *args,
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_DIR / code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vm.vars_file}",
        # romfile= empty: no iPXE ROM on the NIC, so the firmware's own PXE boots.
        "-device", f"virtio-net-pci,netdev=net0,mac={vm.mac},romfile=",
    ]


def qemu_command(vm: VM, memory_mb: int) -> list[str]:
    return [shutil.which(QEMU) or QEMU, "-name", vm.name, *_firmware_args(vm),
            "-accel", "tcg", "-m", str(memory_mb), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
            # A socket to type into (phase-1's rescue shell), logged to a file whether
            # or not anyone is connected.
            "-chardev", f"socket,id=serial0,path={vm.socket},server=on,wait=off,"
            f"logfile={vm.console},logappend=off",
            "-serial", "chardev:serial0",
            "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
            *(arg for disk in vm.disks
              for arg in ("-drive", f"file={disk},if=virtio,format=raw")),
            # A reset (phase-1 giving up, a kernel panic) ends the process: the lab
            # sees it rather than the machine PXE-booting again forever.
            "-boot", "n", "-no-reboot"]


def power_on(vm: VM, lan: Lan, memory_mb: int) -> None:
    """Start the machine: PXE from its virtio NIC, console to a file."""
    vm.console.unlink(missing_ok=True)
    vm.socket.unlink(missing_ok=True)
    if vm.firmware in OVMF:
        # Fresh variables at every power-on: a machine as it left the factory.
        shutil.copyfile(OVMF_DIR / OVMF[vm.firmware][1], vm.vars_file)
    with open(vm.qemu_log, "w") as log:
        vm.process = lan.popen(*qemu_command(vm, memory_mb), stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    vm.forget()


def power_off(vm: VM) -> None:
    proc = vm.process
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc is not None:
        vm.exit_code = proc.returncode


def type_into(vm: VM, text: str) -> None:
    """Send `text` to the machine's serial console, as typed on its keyboard."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(vm.socket))
        sock.sendall(text.encode())
        # QEMU drops what arrives after the client is gone; give it time to take it.
        time.sleep(0.5)
