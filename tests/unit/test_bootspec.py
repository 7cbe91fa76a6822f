"""An OS's boot spec for phase-1's agent: boot.json, and boot.env for busybox sh."""

import re
from pathlib import Path

from boottorrentd.boot.bootspec import boot_env, boot_json
from boottorrentd.config import Aria2Section, BootSection, ClientSection, Config, TrackerSection
from boottorrentd.library.osspec import OSSpec
from boottorrentd.library.store import OSEntry
from boottorrentd.library.torrent import TorrentFile, TorrentInfo
from tests.unit.bootplans import SERVER

# --- boot.json -------------------------------------------------------------------------------


def entry() -> OSEntry:
    spec = OSSpec("Debian 12", "kexec",
                  {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "quiet"})
    info = TorrentInfo("debian12", "ab" * 20, 262144,
                       (TorrentFile(("vmlinuz",), 1000), TorrentFile(("initrd.img",), 3000)))
    return OSEntry("debian12", Path("/var/lib/boottorrent/oss/debian12"), False, spec,
                   Path("/var/lib/boottorrent/torrents/debian12.torrent"), info)


def test_boot_json_of_an_image_os_gives_the_image_size_and_whether_disks_may_be_written():
    spec = OSSpec("Lab", "image", {"image": "img/disk.img.zst", "target": "largest",
                                   "after": "reboot"})
    info = TorrentInfo("lab", "cd" * 20, 262144,
                       (TorrentFile(("README",), 10), TorrentFile(("img", "disk.img.zst"), 5000)))
    image = OSEntry("lab", Path("/srv/lab"), False, spec, Path("/srv/lab.torrent"), info)
    allowed = Config(boottorrent=BootSection(), client=ClientSection(allow_disk_writes=True))

    doc = boot_json(image, allowed, server=SERVER)

    assert doc["image_bytes"] == 5000 and doc["allow_disk_writes"] is True
    assert "image_bytes" not in boot_json(entry(), allowed, server=SERVER)


def test_boot_json_holds_what_phase1_needs():
    config = Config(
        boottorrent=BootSection(seed_time=45),
        aria2=Aria2Section(bt_enable_lpd=True, console_log_level="warn"),
        tracker=TrackerSection(announce_interval=20),
        client=ClientSection(report_interval=2),
    )

    assert boot_json(entry(), config, server=SERVER) == {
        "name": "debian12",
        "dispname": "Debian 12",
        "spec": {"method": "kexec", "dispname": "Debian 12", "kernel": "vmlinuz",
                 "initrd": "initrd.img", "cmdline": "quiet"},
        "infohash": "ab" * 20,
        "size_bytes": 4000,
        "torrent_url": f"http://{SERVER}/torrents/debian12.torrent",
        "seed_time": 45,
        "aria2": {
            "bt-enable-lpd": "true",
            "enable-peer-exchange": "true",
            "enable-dht": "false",
            "enable-dht6": "false",
            "check-integrity": "true",
            "console-log-level": "warn",
            "bt-tracker-interval": "20",
        },
        "report_url": f"http://{SERVER}/api/v1/clients/{{mac}}/events",
        "report_interval": 2,
        "allow_disk_writes": False,
    }


# --- boot.env --------------------------------------------------------------------------------


def test_boot_env_renders_boot_json_as_single_quoted_shell_assignments():
    config = Config(boottorrent=BootSection(seed_time=45),
                    tracker=TrackerSection(announce_interval=20))
    text = boot_env(entry(), config, server=SERVER)
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert "BT_NAME='debian12'" in lines
    assert "BT_SPEC_KERNEL='vmlinuz'" in lines
    assert "BT_SPEC_CMDLINE='quiet'" in lines
    assert "BT_SEED_TIME='45'" in lines
    assert "BT_ARIA2_BT_TRACKER_INTERVAL='20'" in lines
    assert f"BT_TORRENT_URL='http://{SERVER}/torrents/debian12.torrent'" in lines
    assert any(line.startswith("BT_ARIA2_OPTS='--bt-enable-lpd=false ") for line in lines)
    assert all(re.fullmatch(r"BT_[A-Z0-9_]+='[^']*'", line) for line in lines[1:])


def test_boot_env_quotes_a_single_quote_in_a_value():
    spec = OSSpec("Bob's OS", "kexec", {"kernel": "vmlinuz", "initrd": "initrd.img",
                                        "cmdline": "a='b c'"})
    e = entry()
    e = OSEntry(e.name, e.path, e.linked, spec, e.torrent_path, e.torrent)
    lines = boot_env(e, Config(boottorrent=BootSection()), server=SERVER).splitlines()
    assert "BT_DISPNAME='Bob'\\''s OS'" in lines
    assert "BT_SPEC_CMDLINE='a='\\''b c'\\'''" in lines
