"""Settings the benchmark needs as real options: the torrents' piece length and extra
transmission-daemon settings."""

import asyncio
from pathlib import Path

from boottorrentd.config import BootSection, Config, TransmissionSection
from boottorrentd.library.store import Library
from boottorrentd.library.torrent import make_torrent
from boottorrentd.session.children.transmission import TransmissionSeeder

KIB = 1024


def payload(root: Path, size: int) -> Path:
    root.mkdir()
    (root / "config.yaml").write_text(
        "dispname: Tiny\nmethod: kexec\nkernel: vmlinuz\ninitrd: initrd.img\n"
    )
    (root / "vmlinuz").write_bytes(bytes(range(256)) * (size // 256))
    (root / "initrd.img").write_bytes(b"initrd")
    return root


def test_make_torrent_uses_a_given_piece_length(tmp_path: Path):
    src = payload(tmp_path / "os", 100 * KIB)

    _, auto = make_torrent(src, "os")
    _, fixed = make_torrent(src, "os", piece_length=16 * KIB)

    assert auto.piece_length == 128 * KIB
    assert fixed.piece_length == 16 * KIB
    assert fixed.infohash != auto.infohash


def test_the_library_makes_torrents_with_the_given_piece_length(tmp_path: Path):
    src = payload(tmp_path / "src", 100 * KIB)
    library = Library(tmp_path / "state")
    library.load()

    entry = asyncio.run(library.add("tiny", src, piece_length=32 * KIB))

    assert entry.torrent.piece_length == 32 * KIB
    library.load()
    assert library.entries["tiny"].torrent.piece_length == 32 * KIB


def render(cfg: Config, tmp_path: Path) -> dict:
    seeder = TransmissionSeeder(cfg, tmp_path / "transmission", tmp_path / "oss",
                                announce_url=None)
    return seeder._render_settings()


def test_transmission_settings_are_merged_over_the_rendered_ones(tmp_path: Path):
    plain = render(Config(boottorrent=BootSection()), tmp_path)
    cfg = Config(
        boottorrent=BootSection(),
        transmission=TransmissionSection(settings={"encryption": 2, "cache-size-mb": 64}),
    )

    merged = render(cfg, tmp_path)

    assert merged == {**plain, "encryption": 2, "cache-size-mb": 64}
    assert plain["encryption"] == 1
