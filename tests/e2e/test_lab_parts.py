"""The lab's and the demo's pieces that need no QEMU: fast checks before the slow ones."""

import subprocess
from pathlib import Path

from boottorrentd.config import load_config
from boottorrentlab.demo import build_demo_os
from boottorrentlab.lab import LabConfig


def test_the_lab_config_is_one_the_daemon_accepts(tmp_path: Path):
    path = tmp_path / "boottorrent.yaml"
    path.write_text(LabConfig(timeout=-1, default_os="demo", seed_time=7,
                              extra={"seeder": {"upload_limit_kbps": 1000}})
                    .render("10.20.30.1", "10.20.30.100,10.20.30.199,1h"))
    cfg = load_config(path)
    assert cfg.boottorrent.host_ip == "10.20.30.1"
    assert (cfg.boottorrent.timeout, cfg.boottorrent.seed_time) == (-1, 7)
    assert cfg.boottorrent.default_os == "demo"
    assert cfg.dnsmasq.interface == "eth0"
    assert cfg.client.extra_cmdline == "console=ttyS0"
    assert cfg.seeder.upload_limit_kbps == 1000


def test_the_demo_os_is_the_same_every_time_and_its_initrd_has_what_init_needs(
        tmp_path: Path):
    a = build_demo_os(tmp_path / "a", marker="M-OK")
    b = build_demo_os(tmp_path / "b", marker="M-OK")
    for name in ("vmlinuz", "initrd.img", "config.yaml"):
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes(), name
    unpacked = tmp_path / "root"
    unpacked.mkdir()
    subprocess.run(f"zcat {a.folder / 'initrd.img'} | cpio -id --quiet", shell=True,
                   check=True, cwd=unpacked)
    assert "M-OK" in (unpacked / "init").read_text()
    assert (unpacked / "bin/sh").readlink() == Path("busybox")
    order = (unpacked / "lib/modules/load-order").read_text().split()
    assert all((unpacked / "lib/modules" / m).is_file() for m in order)
    # insmod in this order must find every module's dependencies already loaded.
    names = [m.removesuffix(".ko") for m in order]
    assert names.index("virtio_ring") < names.index("virtio_net")
    assert names.index("failover") < names.index("net_failover") < names.index("virtio_net")
    assert names.index("virtio") < names.index("virtio_pci")
