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
        "imaged_os": props["ImagedOS"],
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


def os_record(props: dict[str, Any]) -> dict[str, Any]:
    """An org.boottorrent1.OS object's properties as a record."""
    return {
        "name": props["Name"],
        "display_name": props["DisplayName"],
        "method": props["Method"],
        "size_bytes": props["SizeBytes"],
        "infohash": props["InfoHash"],
        "torrent": props["TorrentPath"],
        "path": props["Path"],
        "linked": props["Linked"],
        "files": props["FileCount"],
        "piece_length": props["PieceLength"],
        "fields": props["Fields"],
        "problem": props["Problem"],
    }


def child_records(manager: dict[str, Any]) -> list[dict[str, Any]]:
    """The Manager's Children property (aa{sv}): one record per supervised child."""
    return [{"name": c["name"], "state": c["state"], "pid": c["pid"],
             "uptime_s": c["uptime_usec"] / 1_000_000, "restarts": c["restarts"]}
            for c in manager["Children"]]


def seed_records(manager: dict[str, Any]) -> list[dict[str, Any]]:
    """The Manager's Seeding property (aa{sv}): one record per seeded OS."""
    return [{key: s[key] for key in ("name", "infohash", "status", "peers", "uploaded_bytes")}
            for s in manager.get("Seeding", [])]
