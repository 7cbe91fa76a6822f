"""What the lab says about its machines: events, why one cannot boot, why one is late."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .machines import VM


@dataclass
class Outcome:
    ok: bool
    problems: list[str]
    seconds: float


def mb(n: float) -> str:
    if n >= 100_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n:.0f} B"


def stage_event(record: dict[str, Any]) -> str:
    """The daemon's new stage of a machine, as a line of the lab's progress."""
    stage = record["stage"] or "?"
    os_name = record["os"] or "the OS"
    events = {
        "dhcp": f"DHCP: {record['ip'] or 'no address yet'}",
        "menu": "iPXE fetched its boot script",
        "phase1": "loading the phase-1 kernel and initrd over HTTP",
        "downloading": f"phase-1 is up; downloading {os_name} over BitTorrent",
        "seeding": f"has the whole OS ({mb(record['downloaded_bytes'])}); seeding for others",
        "booting": f"starting {os_name}",
        "booted": f"{os_name} reports it is up",
        "failed": f"FAILED: {record['error']}",
    }
    return events.get(stage, stage)


def done(vm: VM, marker: str) -> bool:
    """Reached: the daemon saw the machine hand over to its OS and, with a marker, the OS
    printed it on the serial console."""
    return vm.reached_target() and (not marker or vm.marker_at is not None)


def problem(vm: VM, marker: str) -> str | None:
    """Why `vm` cannot reach its target any more, or None while it still may."""
    if done(vm, marker):
        return None
    if vm.stage == "failed":
        return (f"{vm.name} ({vm.mac}) failed in phase-1: "
                f"{vm.record.get('error') or 'no reason given'}")
    if vm.exit_code is not None:
        last = vm.last_console_line()
        qemu = vm.qemu_error() if vm.exit_code != 0 else ""
        return (f"{vm.name} ({vm.mac}) stopped (QEMU exit code {vm.exit_code}) at stage "
                f"{vm.describe_stage()} before reaching its target"
                + (f"; QEMU said: {qemu!r}" if qemu else "")
                + (f"; last console line: {last!r}" if last else "")
                + f"; console: {vm.console}")
    return None


def late(vm: VM, marker: str, timeout: float) -> str:
    """Why `vm` is not done after `timeout` seconds: how far it got."""
    since = max(vm.stage_times.values(), default=0.0)
    last = vm.last_console_line()
    wanted = f"its marker {marker!r}" if marker else "its OS"
    reached = " (it handed over; the marker never came)" if vm.reached_target() else ""
    return (f"{vm.name} ({vm.mac}) did not reach {wanted} within {timeout:.0f} s{reached}; "
            f"last stage: {vm.describe_stage()}"
            + (f" (since {since:.0f} s after power-on)" if vm.stage else "")
            + (f"; last console line: {last!r}" if last else "; console: empty")
            + f"; console: {vm.console}")


def observe(vm: VM, record: dict[str, Any] | None, marker: str) -> list[str]:
    """Take in what the daemon reports of `vm` and what its console shows; the events."""
    events = []
    if record is not None:
        before = vm.stage
        vm.record = record
        vm.peak_down = max(vm.peak_down, record["downloaded_bytes"])
        vm.peak_up = max(vm.peak_up, record["uploaded_bytes"])
        if record["stage"] and record["stage"] not in vm.stage_times:
            vm.stage_times[record["stage"]] = vm.elapsed()
        if record["stage"] != before:
            events.append(stage_event(record))
    if marker and vm.marker_at is None and marker in vm.console_text():
        vm.marker_at = vm.elapsed()
        line = next((ln for ln in vm.console_text().splitlines() if marker in ln), "")
        events.append(f"target OS up: {line.strip()}")
    if vm.exit_code is None and vm.process is not None and vm.process.poll() is not None:
        vm.exit_code = vm.process.returncode
        events.append(f"powered off (QEMU exit code {vm.exit_code})")
    return events
