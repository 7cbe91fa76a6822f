"""The lab's and the demo's pieces that need no QEMU: fast checks before the slow ones."""

import hashlib
import subprocess
from pathlib import Path

from boottorrentctl.demo import VIRTIO_NET_MODULES, Initramfs, module_load_order, newest_kernel
from boottorrentctl.lab import LabConfig
from boottorrentd.config import load_config


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


def test_an_initramfs_is_a_cpio_archive_with_the_same_bytes_every_time(tmp_path: Path):
    def build(name: str) -> Path:
        image = Initramfs()
        image.add_file("etc/motd", "hello\n")
        image.add_symlink("bin/sh", "busybox")
        image.add_file("init", "#!/bin/sh\n", 0o755)
        image.write(tmp_path / name)
        return tmp_path / name

    a, b = build("a.img"), build("b.img")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    listing = subprocess.run(f"zcat {a} | cpio -t --quiet", shell=True, check=True,
                             capture_output=True, text=True).stdout.split()
    assert listing == ["bin", "bin/sh", "etc", "etc/motd", "init"]


def test_nic_modules_come_after_their_dependencies():
    order = [p.name.split(".ko")[0] for p in
             module_load_order(newest_kernel(), VIRTIO_NET_MODULES)]
    assert order.index("virtio_ring") < order.index("virtio_net")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("virtio") < order.index("virtio_pci")
    assert len(order) == len(set(order))
