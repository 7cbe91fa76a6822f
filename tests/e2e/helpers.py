"""Small shared pieces of the end-to-end tests."""

from __future__ import annotations

from boottorrentlab.lab import TARGET_STAGES, VM

# Seconds one TCG machine may take from power-on to its OS (≈ 30-60 s measured here).
BOOT_TIMEOUT = 240


def timing_line(what: str, vm: VM) -> str:
    def at(*stages: str) -> str:
        times = [vm.stage_times[s] for s in stages if s in vm.stage_times]
        return f"{min(times):5.1f}" if times else "    -"

    target = f"{vm.marker_at:5.1f}" if vm.marker_at is not None else at(*TARGET_STAGES)
    return (f"{what:<34} {vm.name}: power-on → phase-1 {at('phase1')} s, → downloading "
            f"{at('downloading')} s, → has OS {at('seeding', 'booting')} s, → target {target} s")
