"""What `boottorrentctl lab` shows: progress lines, a live table, and the summary."""

from __future__ import annotations

import contextlib
import time
from typing import TextIO

from .config import TARGET_STAGES
from .core import Lab
from .machines import VM
from .watch import mb


class Screen:
    """Progress lines, and on a terminal a client table redrawn in place below them."""

    def __init__(self, out: TextIO, lab: Lab, marker: str) -> None:
        self.out = out
        self.lab = lab
        self.marker = marker
        self.live = out.isatty()
        self.drawn = 0
        self.t0 = time.monotonic()

    def update(self, events: list[tuple[VM, str]]) -> None:
        self._erase()
        for vm, text in events:
            print(f"[{vm.elapsed():6.1f}s] {vm.name} {vm.mac}  {text}", file=self.out)
        if self.live:
            lines = self.table()
            print("\n".join(lines), file=self.out)
            self.drawn = len(lines)
        self.out.flush()

    def _erase(self) -> None:
        if self.drawn:
            # Up to the table's first line, then clear to the end of the screen.
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def finish(self) -> None:
        self._erase()
        self.out.flush()

    def table(self) -> list[str]:
        rows = [f"  {'VM':<4} {'MAC':<17} {'IP':<15} {'STAGE':<11} {'PROGRESS':<16} "
                f"{'DOWN/s':>8} {'UP/s':>8} {'PEERS':>5} {'TIME':>6}  CONSOLE"]
        for vm in self.lab.vms:
            r = vm.record
            progress = float(r.get("progress") or 0.0)
            bar = "#" * int(progress * 10) + "." * (10 - int(progress * 10))
            stage = vm.stage or "firmware"
            if vm.marker_at is not None:
                stage = "TARGET UP"
            console = vm.last_console_line()[:40]
            rows.append(f"  {vm.name:<4} {vm.mac:<17} {r.get('ip') or '-':<15} {stage:<11} "
                        f"[{bar}] {progress:>4.0%} {_rate(r.get('down_rate', 0)):>8} "
                        f"{_rate(r.get('up_rate', 0)):>8} {r.get('peers', 0):>5} "
                        f"{vm.elapsed():>5.0f}s  {console}")
        return rows


def _rate(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.0f}k" if n else "-"


def _machine_line(vm: VM, marker: str) -> str:
    def at(t: float | None) -> str:
        return f"{t:.1f}" if t is not None else "-"

    first = vm.stage_times.get
    target = vm.marker_at if marker else min(
        (vm.stage_times[s] for s in TARGET_STAGES if s in vm.stage_times), default=None)
    has_os = first("seeding", first("booting"))
    return (f"  {vm.name:<4} {vm.mac:<17} {vm.record.get('ip') or '-':<15} "
            f"{at(first('phase1')):>7} {at(first('downloading')):>6} {at(has_os):>6} "
            f"{at(target):>6}  {mb(vm.peak_down):>10} {mb(vm.peak_up):>9}")


def summary(lab: Lab, os_name: str, marker: str) -> list[str]:
    """The run in numbers: per machine, when each step was first seen, and the bytes."""
    lines = ["", "Summary, in seconds after power-on (PHASE-1: iPXE fetched the phase-1 kernel; "
             "AGENT: phase-1 is up; HAS OS: downloaded and verified; TARGET: the OS is up):",
             f"  {'VM':<4} {'MAC':<17} {'IP':<15} {'PHASE-1':>7} {'AGENT':>6} {'HAS OS':>6} "
             f"{'TARGET':>6}  {'DOWNLOADED':>10} {'UPLOADED':>9}"]
    lines += [_machine_line(vm, marker) for vm in lab.vms]
    down = sum(vm.peak_down for vm in lab.vms)
    up = sum(vm.peak_up for vm in lab.vms)
    seed = None
    if lab.view is not None:
        with contextlib.suppress(Exception):
            seed = lab.view.seed_uploaded(os_name)
    lines.append("")
    size = _os_size(lab, os_name)
    if seed is not None and size:
        lines.append(f"  The server's seed sent {mb(seed)}: {seed / size:.2f} x the OS "
                     f"({mb(size)}) for {len(lab.vms)} machine(s). The machines downloaded "
                     f"{mb(down)} and report {mb(up)} uploaded to each other.")
    else:
        lines.append(f"  The machines downloaded {mb(down)} and report {mb(up)} uploaded "
                     "to each other.")
    return lines


def _os_size(lab: Lab, os_name: str) -> int:
    folder = lab.state_dir / "oss" / os_name
    try:
        return sum(f.stat().st_size for f in folder.resolve().rglob("*")
                   if f.is_file() and f.name != "config.yaml")
    except OSError:
        return 0
