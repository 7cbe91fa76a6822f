"""add-os --from: what it recognises (live-build tree, ISO, installed root) and what not."""

import subprocess
from pathlib import Path

import pytest

from boottorrentd.errors import InvalidArgument
from boottorrentd.library import osimport


def _live_tree(folder: Path, version: str = "") -> Path:
    suffix = f"-{version}" if version else ""
    (folder / "live").mkdir(parents=True)
    (folder / f"live/vmlinuz{suffix}").write_bytes(b"kernel")
    (folder / f"live/initrd.img{suffix}").write_bytes(b"initrd")
    (folder / "live/filesystem.squashfs").write_bytes(b"squashfs")
    return folder


def _root(folder: Path) -> Path:
    """A tiny installed root: two kernels in /boot, systemd as /sbin/init, os-release."""
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (folder / "boot").mkdir(parents=True, exist_ok=True)
        (folder / f"boot/vmlinuz-{version}").write_bytes(f"kernel {version}".encode())
        (folder / f"boot/initrd.img-{version}").write_bytes(f"initrd {version}".encode())
    (folder / "usr/lib/systemd").mkdir(parents=True)
    (folder / "usr/lib/systemd/systemd").write_bytes(b"#!/bin/sh\n")
    (folder / "usr/sbin").mkdir(parents=True)
    (folder / "sbin").symlink_to("usr/sbin")
    (folder / "usr/sbin/init").symlink_to("/lib/systemd/systemd")
    (folder / "lib").symlink_to("usr/lib")
    (folder / "etc").mkdir()
    (folder / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    return folder


def test_a_live_build_tree_is_recognised_and_copied(tmp_path):
    source = _live_tree(tmp_path / "tree")

    found = osimport.recognise(source)

    assert found.kind == "live-build tree"
    assert (found.kernel, found.initrd) == ("live/vmlinuz", "live/initrd.img")
    # live-config in the booted system needs boot=live to set up the live user.
    assert found.config_values() == {"method": "live", "kernel": "vmlinuz",
                                     "initrd": "initrd.img", "squashfs": "filesystem.squashfs",
                                     "cmdline": "boot=live components"}
    dest = tmp_path / "os"
    dest.mkdir()
    osimport.import_os(found, dest, lambda *_: None)
    assert sorted(p.name for p in dest.iterdir()) == [
        "filesystem.squashfs", "initrd.img", "vmlinuz"]
    assert (dest / "vmlinuz").read_bytes() == b"kernel"


def test_a_live_build_tree_with_versioned_names_takes_the_kernel_that_has_an_initrd(tmp_path):
    source = _live_tree(tmp_path / "tree", "6.1.0-9-amd64")
    # A newer kernel without its initrd cannot boot: the older pair is the one.
    (source / "live/vmlinuz-6.1.0-10-amd64").write_bytes(b"newer kernel")

    found = osimport.recognise(source)

    assert (found.kernel, found.initrd) == ("live/vmlinuz-6.1.0-9-amd64",
                                            "live/initrd.img-6.1.0-9-amd64")


def test_a_live_build_iso_is_read_without_mounting_it(tmp_path):
    tree = _live_tree(tmp_path / "tree", "6.12.10-amd64")
    iso = tmp_path / "live.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", str(iso), str(tree)],
                   check=True, capture_output=True)

    found = osimport.recognise(iso)

    assert found.kind == "live-build ISO"
    assert found.kernel == "live/vmlinuz-6.12.10-amd64"
    dest = tmp_path / "os"
    dest.mkdir()
    progress: list[tuple[str, int, int]] = []
    osimport.import_os(found, dest, lambda *step: progress.append(step))
    assert (dest / "filesystem.squashfs").read_bytes() == b"squashfs"
    assert (dest / "initrd.img").read_bytes() == b"initrd"
    assert progress[-1] == ("copying", len(b"kernelinitrdsquashfs"), len(b"kernelinitrdsquashfs"))


def test_an_installed_root_is_recognised_with_its_newest_kernel_and_made_into_a_squashfs(
        tmp_path):
    source = _root(tmp_path / "root")

    found = osimport.recognise(source)

    assert found.kind == "root"
    assert (found.kernel, found.initrd) == ("boot/vmlinuz-6.1.0-10-amd64",
                                            "boot/initrd.img-6.1.0-10-amd64")
    assert found.config_values() == {
        "method": "live", "kernel": "vmlinuz", "initrd": "initrd.img",
        "squashfs": "root.squashfs", "dispname": "Debian GNU/Linux 13 (trixie)"}
    dest = tmp_path / "os"
    dest.mkdir()
    osimport.import_os(found, dest, lambda *_: None)
    assert (dest / "vmlinuz").read_bytes() == b"kernel 6.1.0-10-amd64"
    listing = subprocess.run(["unsquashfs", "-l", str(dest / "root.squashfs")], check=True,
                             capture_output=True, text=True).stdout
    assert "squashfs-root/etc/os-release" in listing
    # The kernel and initrd travel beside the squashfs, not in it.
    assert "squashfs-root/boot/vmlinuz" not in listing


@pytest.mark.parametrize("make", [
    lambda p: p.mkdir(),
    lambda p: (p / "live").mkdir(parents=True),
    # A kernel with no init: a /boot folder, not a root.
    lambda p: (p / "boot").mkdir(parents=True) or (p / "boot/vmlinuz-6.1").write_bytes(b"k")
    or (p / "boot/initrd.img-6.1").write_bytes(b"i"),
], ids=["empty", "live-without-files", "boot-without-init"])
def test_a_folder_with_nothing_known_is_refused_saying_what_was_looked_for(tmp_path, make):
    source = tmp_path / "src"
    make(source)

    with pytest.raises(InvalidArgument) as err:
        osimport.recognise(source)

    message = str(err.value)
    assert "live/filesystem.squashfs" in message and "boot/vmlinuz-VERSION" in message


def test_an_iso_without_a_live_system_is_refused(tmp_path):
    (tmp_path / "tree/docs").mkdir(parents=True)
    (tmp_path / "tree/docs/readme").write_text("hello")
    iso = tmp_path / "other.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", str(iso),
                    str(tmp_path / "tree")], check=True, capture_output=True)

    with pytest.raises(InvalidArgument, match="holds no Debian live system"):
        osimport.recognise(iso)


def test_a_file_that_is_no_iso_is_refused(tmp_path):
    (tmp_path / "disk.img").write_bytes(b"\0" * 40000)

    with pytest.raises(InvalidArgument, match="not an ISO 9660 image"):
        osimport.recognise(tmp_path / "disk.img")


@pytest.mark.parametrize("source", ["/", "//", "/usr/.."])
def test_the_servers_own_root_is_refused_before_anything_is_packed(source):
    with pytest.raises(InvalidArgument, match="this server's own running system"):
        osimport.recognise(Path(source))
