"""`boottorrentctl lab` and `make demo`: the lab's arguments, and one run from start to end.

boottorrentctl hands `lab ...` over to main() here unparsed, so that it loads the lab
(QEMU, namespaces, the demo OS builder) only when the lab is used.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from boottorrentctl.bus import CtlError
from boottorrentlab.demo import build_demo_os
from boottorrentlab.devkit.shell import CommandError

from .config import DEFAULT_TIMEOUT, HTTP_PORT, LabConfig, LabError, missing_prerequisites
from .core import Lab
from .machines import FIRMWARES
from .phase1cache import PHASE1_CACHE, ensure_phase1
from .screen import Screen, summary

SYSTEM_LIBRARY = Path("/var/lib/boottorrent/oss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=3, metavar="N",
                        help="QEMU machines to boot at once (default 3)")
    parser.add_argument("--os", metavar="NAME",
                        help="the OS to boot: a folder with a config.yaml, or an OS of the "
                        "system's library; default: a demo OS built from this host")
    parser.add_argument("--marker", metavar="TEXT",
                        help="text the OS prints on its serial console once it is up; the "
                        "demo OS prints one. Without it, a machine counts as booted when "
                        "phase-1 hands it over to the OS")
    parser.add_argument("--keep", action="store_true",
                        help="leave the lab running at the end (prints how to remove it)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--firmware", choices=(*FIRMWARES, "mixed"), default="bios",
                        help="the machines' firmware: bios (SeaBIOS, the NIC's iPXE ROM), "
                        "uefi (OVMF's own PXE), secureboot (OVMF with Secure Boot "
                        "enforced), httpboot (OVMF's UEFI HTTP Boot), securehttpboot (the same "
                        "with Secure Boot enforced), or mixed (bios, uefi "
                        "and secureboot in turn); default bios")
    parser.add_argument("--memory", type=int, default=512, metavar="MB",
                        help="RAM per machine (default 512)")
    parser.add_argument("--seed-time", type=int, default=5, metavar="SECONDS",
                        help="seconds each client seeds before starting its OS (default 5)")
    parser.add_argument("--phase1", metavar="DIR", type=Path,
                        help="a built phase-1 image (vmlinuz, initrd.img) to serve instead "
                        f"of the one cached in {PHASE1_CACHE}")
    parser.add_argument("--rebuild-phase1", action="store_true",
                        help="build the phase-1 image again even when one is cached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boottorrentctl lab",
        description="Boot QEMU machines over PXE from a private boottorrentd on a virtual LAN "
        "(network namespaces, addresses only inside it) and show them fetch the OS from each "
        "other; exits 0 when every machine reached its OS. Needs root and qemu-system-x86.")
    add_arguments(parser)
    return parser


def resolve_os(spec: str) -> tuple[str, Path]:
    """--os: a folder with a config.yaml, or the name of an OS in the system's library."""
    path = Path(spec)
    if (path / "config.yaml").is_file():
        # A library name from the folder's: a-z, 0-9, '.', '_', '-'.
        name = re.sub(r"[^a-z0-9._-]+", "-", path.resolve().name.lower()).strip("._-")
        return name or "os", path.resolve()
    library = SYSTEM_LIBRARY / spec
    if (library / "config.yaml").is_file():
        return spec, library
    raise LabError(f"--os {spec}: neither a folder with a config.yaml nor an OS in "
                   f"{SYSTEM_LIBRARY} ('boottorrentctl list-os' lists the system's OSes)")


def run(args: argparse.Namespace) -> int:
    """`boottorrentctl lab`: 0 when every machine reached its OS, 1 otherwise."""
    out = sys.stdout
    problems = missing_prerequisites()
    if args.clients < 1:
        problems.append("--clients must be at least 1")
    if problems:
        for p in problems:
            print(f"boottorrentctl lab: {p}", file=sys.stderr)
        return 1
    # SIGTERM (a CI timeout, `kill`) tears down like Ctrl-C does.
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    lab: Lab | None = None
    code = 1
    try:
        lab = Lab(LabConfig(seed_time=args.seed_time), memory_mb=args.memory, out=out)
        code = _run(lab, args, out)
    except (LabError, CommandError, CtlError, TimeoutError) as e:
        print(f"boottorrentctl lab: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        code = 130
    finally:
        if lab is not None:
            # A second Ctrl-C must not cut the teardown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                _finish(lab, args, code, out)
            finally:
                signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    return code


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _target_os(lab: Lab, args: argparse.Namespace, out: TextIO) -> tuple[str, Path, str]:
    """The OS the machines boot: --os, else the demo OS built now; and its marker."""
    if args.os:
        os_name, os_folder = resolve_os(args.os)
        print(f"OS: {os_name} from {os_folder}", file=out)
        return os_name, os_folder, args.marker or ""
    print("Building the demo OS from this host (kernel + busybox initramfs) ...",
          file=out, flush=True)
    demo = build_demo_os(lab.workdir / "demo", report_port=HTTP_PORT)
    print(f"  {demo.folder}: kernel {demo.kernel_version}, {demo.size_bytes / 1e6:.1f} MB; "
          f"it prints {demo.marker!r} on its console when it is up", file=out)
    return demo.name, demo.folder, args.marker or demo.marker


def _run(lab: Lab, args: argparse.Namespace, out: TextIO) -> int:
    t0 = time.monotonic()
    os_name, os_folder, marker = _target_os(lab, args, out)
    phase1 = args.phase1 or ensure_phase1(args.rebuild_phase1, out)

    lab.config.default_os = os_name
    print(f"Starting the lab {lab.tag} ...", file=out, flush=True)
    lab.start()
    lab.install_phase1(phase1)
    # In place: the folder is the lab's own demo or an OS the system already keeps.
    lab.add_os(os_name, os_folder, link=True)
    lab.start_session()
    print(f"  boot session running: DHCP, TFTP, HTTP on {lab.server}, tracker, seed of "
          f"{os_name}", file=out)
    print(f"Powering on {args.clients} QEMU machine(s) (TCG, {args.memory} MB, firmware "
          f"{args.firmware}, PXE from a virtio NIC) ...", file=out, flush=True)
    screen = Screen(out, lab, marker)
    lab.boot(args.clients, args.firmware)
    try:
        outcome = lab.wait(marker=marker, timeout=args.timeout, on_poll=screen.update)
    finally:
        screen.finish()
    for line in summary(lab, os_name, marker):
        print(line, file=out)
    if not outcome.ok:
        print("", file=out)
        for p in outcome.problems:
            print(f"boottorrentctl lab: {p}", file=sys.stderr)
        return 1
    print(f"\nAll {len(lab.vms)} machine(s) booted {os_name} from the swarm in "
          f"{outcome.seconds:.0f} s (lab total {time.monotonic() - t0:.0f} s).", file=out)
    return 0


def _finish(lab: Lab, args: argparse.Namespace, code: int, out: TextIO) -> None:
    if args.keep:
        script = lab.workdir / "teardown.sh"
        script.write_text(lab.teardown_script())
        script.chmod(0o755)
        print(f"\nThe lab keeps running (--keep). Talk to its daemon with:\n"
              f"  DBUS_SYSTEM_BUS_ADDRESS={lab.bus.address if lab.bus else '?'} "
              f"boottorrentctl clients\n"
              f"Consoles: {lab.workdir}/vm*-console.log (type into one through its socket, "
              f"vmN.sock, e.g. with socat). Remove it all with: sh {script}",
              file=out)
        return
    print("Tearing the lab down ...", file=out, flush=True)
    problems = lab.close()
    for p in problems:
        print(f"boottorrentctl lab: teardown: {p}", file=sys.stderr)
    keep_logs = code != 0
    lab.remove_files(keep_logs=keep_logs)
    if keep_logs:
        print(f"Logs (consoles, daemon) kept in {lab.workdir}", file=out)
    else:
        print("Lab removed.", file=out)


def main(argv: list[str] | None = None) -> int:
    """`boottorrentctl lab ARGS`."""
    return run(build_parser().parse_args(argv))


def demo(argv: list[str] | None = None) -> int:
    """`make demo`: the lab with the demo OS, after a word on what is about to happen."""
    parser = argparse.ArgumentParser(
        prog="make demo",
        description="Build a demo OS from this host, then PXE-boot QEMU machines with it "
        "from the BootTorrent swarm on a virtual LAN (boottorrentctl lab).")
    parser.add_argument("--clients", type=int, default=3, help="machines to boot (default 3)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the lab running after the boot (prints how to remove it)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make demo needs root: it creates network namespaces, a bridge and tap "
              "devices. Run: sudo make demo", file=sys.stderr)
        return 1
    print("BootTorrent demo: a virtual lab of QEMU machines boots an OS built from this host,\n"
          "fetching it from each other over BitTorrent.\n", flush=True)
    return main(["--clients", str(args.clients)] + (["--keep"] if args.keep else []))
