"""The library, machines and config that the tests of boot/ plan for, and the plan's iPXE
script: shared by test_bootplan, test_ipxe and test_grub."""

from boottorrentd.boot.ipxe import render_ipxe
from boottorrentd.boot.plan import BootPlan, plan_boot
from boottorrentd.config import BootSection, Config

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
