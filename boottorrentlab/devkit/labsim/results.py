"""What a run measured: each machine's row (MachineResult), the run's (SimResult), their
checks and their JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The Client properties a progress report sets, by the report's key.
REPORTED = {"stage": "Stage", "progress": "Progress", "downloaded_bytes": "DownloadedBytes",
            "uploaded_bytes": "UploadedBytes", "down_rate": "DownloadRate",
            "up_rate": "UploadRate", "peers": "Peers"}


@dataclass
class MachineResult:
    name: str
    mac: str = ""
    ip: str = ""
    lease_s: float | None = None
    downloaded_s: float | None = None  # whole OS downloaded, seconds after the start
    done_s: float | None = None  # verified copy, after seed_time: seconds after the start
    verified: bool = False
    http_bytes: int = 0  # what it fetched from the boot HTTP server
    reports: int = 0
    report_errors: int = 0
    last_report: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)  # its D-Bus object at the end
    error: str = ""


@dataclass
class SimResult:
    machines: int
    rate_bit_s: int
    server_rate_bit_s: int
    size_bytes: int
    t_download_all_s: float | None  # every machine has the whole OS, seconds after power-on
    t_all_s: float | None  # every machine verified it after seeding seed_time
    leases: int
    verified: int
    # Machines whose last report differs from their D-Bus object (None: not checked, the
    # full server was stopped).
    reports_lost: list[str] | None
    server_sent_bytes: int  # the servers' links, as the bridge counts them
    servers_sent_bytes: list[int]  # each server's, the full one first
    http_bytes: int  # of that, what the machines fetched by HTTP (scripts, phase-1, torrent)
    seed_uploaded_bytes: int  # the seed engines' own count
    servers_seed_uploaded_bytes: list[int]
    stopped_server_at_s: float | None  # when stop_server was stopped
    dbus_calls: int
    dbus_p50_ms: float
    dbus_p99_ms: float
    dbus_max_ms: float
    properties_changed: int  # PropertiesChanged signals the bus carried during the run
    properties_changed_peak_per_s: int
    daemon_peak_rss_kib: int
    failures: list[str]
    per_machine: list[MachineResult]

    def summary(self) -> dict[str, Any]:
        """The run without the per-machine rows."""
        out = asdict(self)
        out.pop("per_machine")
        return out

    def document(self) -> dict[str, Any]:
        """The whole run as the command line writes it with --json."""
        return {"summary": self.summary(), "machines": [asdict(r) for r in self.per_machine]}

    @property
    def passed(self) -> bool:
        return not self.failures and not self.reports_lost


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latest(times: list[float | None]) -> float | None:
    """When the last machine got there; None while one never did."""
    return None if None in times else round(max(t for t in times if t), 1)


def lost_reports(machines: list[MachineResult],
                 clients: dict[str, dict[str, Any]]) -> list[str]:
    """The machines whose last report their D-Bus object (in `clients`, Client properties
    by MAC) does not show; each machine's `final` is set to what its object shows."""
    lost = []
    for r in machines:
        r.final = {key: clients.get(r.mac, {}).get(prop) for key, prop in REPORTED.items()}
        wanted = {key: r.last_report.get(key) for key in REPORTED}
        if r.last_report and any(
                wanted[k] is not None and wanted[k] != r.final[k] for k in REPORTED):
            lost.append(r.name)
    return lost
