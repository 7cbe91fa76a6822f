"""The daemon's D-Bus objects as plain records: what `--json` prints and the lab reads.

One place turns bus properties into records, so the CLI and the lab cannot disagree
about a field.
"""

from typing import Any


def client_record(props: dict[str, Any]) -> dict[str, Any]:
    """An org.boottorrent1.Client object's properties as a record."""
    return {
        "mac": props["MAC"],
        "ip": props["IPAddress"],
        "hostname": props["Hostname"],
        "os": props["OS"],
        "assigned_os": props["AssignedOS"],
        "stage": props["Stage"],
        "progress": props["Progress"],
        "downloaded_bytes": props["DownloadedBytes"],
        "uploaded_bytes": props["UploadedBytes"],
        "down_rate": props["DownloadRate"],
        "up_rate": props["UploadRate"],
        "peers": props["Peers"],
        "last_seen": props["LastSeenUSec"] / 1_000_000,
        "error": props["Error"],
    }


def child_records(manager: dict[str, Any]) -> list[dict[str, Any]]:
    """The Manager's Children property: one record per supervised child."""
    return [{"name": n, "state": st, "pid": pid, "uptime_s": up / 1_000_000, "restarts": r}
            for n, st, pid, up, r in manager["Children"]]


def seed_records(manager: dict[str, Any]) -> list[dict[str, Any]]:
    """The Manager's Seeding property: one record per seeded OS."""
    return [{"name": n, "infohash": h, "status": st, "peers": p, "uploaded_bytes": u}
            for n, h, st, p, u in manager.get("Seeding", [])]
