"""The phase-1 builder's parts: the cpio writer, module and library resolution, boot.env."""

import hashlib
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from boottorrentd.boot.bootspec import boot_env, boot_json
from boottorrentd.boot.render import shell_quote
from boottorrentd.config import Aria2Section, BootSection, Config
from boottorrentd.errors import InvalidArgument
from boottorrentd.library.osspec import OSSpec
from boottorrentd.library.store import OSEntry
from boottorrentd.library.torrent import TorrentFile, TorrentInfo
from boottorrentd.phase1 import elf, icudata, kernel, libraries, modules
from boottorrentd.phase1.cpio import Archive, cpio_newc, read_cpio_newc

# --- cpio ------------------------------------------------------------------------------------


def sample() -> Archive:
    a = Archive()
    a.add_file("bin/busybox", b"\x7fELF...", executable=True)
    a.add_symlink("bin/sh", "busybox")
    a.add_file("init", b"#!/bin/sh\necho hi\n", executable=True)
    a.add_char_device("dev/console", 5, 1)
    a.add_dir("tmp", 0o1777)
    a.add_file("etc/hosts", b"127.0.0.1 localhost\n")
    return a


def test_the_archive_is_the_same_whatever_the_order_things_were_added_in():
    a = sample()
    b = Archive()
    b.add_file("etc/hosts", b"127.0.0.1 localhost\n")
    b.add_dir("tmp", 0o1777)
    b.add_char_device("dev/console", 5, 1)
    b.add_file("init", b"#!/bin/sh\necho hi\n", executable=True)
    b.add_symlink("bin/sh", "busybox")
    b.add_file("bin/busybox", b"\x7fELF...", executable=True)
    assert b"".join(a.chunks()) == b"".join(b.chunks())


def test_the_archive_is_newc_with_sorted_members_zero_times_and_owners_and_numbered_inodes():
    blob = b"".join(sample().chunks())
    assert len(blob) % 4 == 0
    headers = [m.start() for m in re.finditer(b"070701", blob)]
    names, inodes = [], []
    for at in headers:
        fields = [int(blob[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        ino, _mode, uid, gid, _nlink, mtime = fields[:6]
        assert (uid, gid, mtime) == (0, 0, 0)
        name = blob[at + 110: at + 110 + fields[11] - 1].decode()
        names.append(name)
        inodes.append(ino)
    assert names[-1] == "TRAILER!!!"
    # Parents come before what they hold, which the kernel's unpacker needs.
    assert names[:-1] == sorted(names[:-1])
    assert names[:-1] == ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc",
                          "etc/hosts", "init", "tmp"]
    assert inodes[:-1] == list(range(1, 10))


def test_the_archive_reads_back_with_modes_normalised():
    members = read_cpio_newc(b"".join(sample().chunks()))
    assert members["bin/busybox"].mode == stat.S_IFREG | 0o755
    assert members["etc/hosts"].mode == stat.S_IFREG | 0o644
    assert members["bin/sh"].mode == stat.S_IFLNK | 0o777 and members["bin/sh"].data == b"busybox"
    assert members["dev/console"].mode == stat.S_IFCHR | 0o600
    assert members["dev/console"].rdev == (5, 1)
    assert members["tmp"].mode == stat.S_IFDIR | 0o1777
    assert members["init"].data == b"#!/bin/sh\necho hi\n"


def test_gnu_cpio_lists_the_archive(tmp_path):
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=b"".join(sample().chunks()),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "etc",
                       "etc/hosts", "init", "tmp"]


def test_size_without_data_matches_the_archive():
    a = sample()
    assert a.size() == len(b"".join(a.chunks()))


def test_the_same_path_with_other_contents_is_refused_and_paths_stay_inside():
    a = sample()
    a.add_file("etc/hosts", b"127.0.0.1 localhost\n")  # the same again is fine
    with pytest.raises(ValueError, match="twice"):
        a.add_file("etc/hosts", b"other")
    with pytest.raises(ValueError, match="folder and a file"):
        a.add_dir("init")
    with pytest.raises(ValueError, match="inside the archive"):
        a.add_file("../etc/passwd", b"")


def test_the_manifest_lists_files_with_their_hashes():
    files = {f["path"]: f for f in sample().files()}
    assert set(files) == {"/bin/busybox", "/init", "/etc/hosts"}
    assert files["/init"]["size"] == len(b"#!/bin/sh\necho hi\n")
    assert files["/init"]["sha256"] == hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()


def test_cpio_of_an_empty_tree_is_just_the_trailer():
    blob = b"".join(cpio_newc({}))
    assert blob.startswith(b"070701") and b"TRAILER!!!" in blob and len(blob) % 4 == 0


# --- kernels ---------------------------------------------------------------------------------


def test_find_kernel_takes_the_newest_by_version_order(tmp_path, monkeypatch):
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-28-amd64"):
        (tmp_path / f"vmlinuz-{v}").write_bytes(b"k")
    monkeypatch.setattr(kernel, "BOOT_DIR", tmp_path)
    assert kernel.find_kernel() == ("6.1.0-10-amd64", tmp_path / "vmlinuz-6.1.0-10-amd64")
    assert kernel.find_kernel("6.1.0-9-amd64")[0] == "6.1.0-9-amd64"
    with pytest.raises(InvalidArgument, match=r"linux-image-6\.9") as err:
        kernel.find_kernel("6.9")
    assert "5.10.0-28-amd64, 6.1.0-9-amd64, 6.1.0-10-amd64" in str(err.value)


def test_find_kernel_without_any_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "BOOT_DIR", tmp_path)
    with pytest.raises(InvalidArgument, match="apt install linux-image-amd64"):
        kernel.find_kernel()


# --- modules ---------------------------------------------------------------------------------

FAKE_DEP = "".join(f"kernel/{line}\n" for line in (
    "drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz "
    "kernel/net/core/failover.ko.xz",
    "drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz",
    "net/core/failover.ko.xz:",
    "drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz "
    "kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz",
    "drivers/virtio/virtio_pci_modern_dev.ko.xz:",
    "drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz",
    "drivers/virtio/virtio.ko.xz:",
    "drivers/net/ethernet/8390/ne2k-pci.ko.xz: kernel/drivers/net/ethernet/8390/8390.ko.xz",
    "drivers/net/ethernet/8390/8390.ko.xz:",
))


def test_modules_load_after_everything_they_need_in_the_order_asked():
    dep = modules.parse_modules_dep(FAKE_DEP)
    order, missing = modules.resolve_modules(
        dep, ["virtio_net", "virtio_pci", "ne2k-pci", "e1000", "squashfs"],
        builtin=["kernel/fs/squashfs/squashfs.ko"])
    names = [modules.module_name(p) for p in order]
    assert names == ["failover", "net_failover", "virtio_net", "virtio_pci_modern_dev",
                     "virtio", "virtio_ring", "virtio_pci", "8390", "ne2k_pci"]
    # e1000 is unknown; squashfs is built in and needs no loading.
    assert missing == ["e1000"]
    for i, path in enumerate(order):
        for needed in dep[modules.module_name(path)][1]:
            assert order.index(needed) < i


def test_a_module_asked_for_twice_loads_once():
    dep = modules.parse_modules_dep(FAKE_DEP)
    order, _ = modules.resolve_modules(dep, ["net_failover", "virtio_net", "virtio-net"])
    assert [modules.module_name(p) for p in order] == ["failover", "net_failover", "virtio_net"]


def test_module_names_drop_compression_suffixes_and_dashes():
    assert modules.module_name("kernel/a/ne2k-pci.ko.xz") == "ne2k_pci"
    assert modules.module_name("kernel/a/e1000.ko") == "e1000"
    assert modules.module_name("kernel/a/r8169.ko.zst") == "r8169"
    assert modules.plain_module_path("kernel/a/e1000.ko.xz") == "kernel/a/e1000.ko"


def test_a_cycle_in_modules_dep_is_reported_not_looped():
    dep = modules.parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n")
    with pytest.raises(ValueError, match="cycle"):
        modules.resolve_modules(dep, ["a"])


def test_xz_modules_are_decompressed(tmp_path):
    import lzma
    (tmp_path / "m.ko.xz").write_bytes(lzma.compress(b"\x7fELF module", check=lzma.CHECK_CRC32))
    (tmp_path / "p.ko").write_bytes(b"\x7fELF plain")
    assert modules.decompress_module(tmp_path / "m.ko.xz") == b"\x7fELF module"
    assert modules.decompress_module(tmp_path / "p.ko") == b"\x7fELF plain"


def test_modinfo_reads_a_real_modules_firmware_list():
    version, _ = kernel.find_kernel()
    dep = modules.parse_modules_dep((modules.MODULES_ROOT / version / "modules.dep").read_text())
    data = modules.decompress_module(modules.MODULES_ROOT / version / dep["r8169"][0])
    info = dict(modules.modinfo(data))
    assert info["name"] == "r8169" and "license" in info
    assert any(k == "firmware" and v.startswith("rtl_nic/") for k, v in modules.modinfo(data))


# --- ELF libraries ---------------------------------------------------------------------------


def ldd(binary: str) -> dict[str, str]:
    """What the system's loader resolves: path as ldd names it -> real file."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        if "=>" in line:
            path = line.split("=>")[1].split("(")[0].strip()
            if path:
                found[path] = str(Path(path).resolve())
        elif line.strip().startswith("/"):
            path = line.split("(")[0].strip()
            found[path] = str(Path(path).resolve())
    return found


def test_aria2c_libraries_are_those_the_loader_finds():
    aria2c = shutil.which("aria2c")
    assert aria2c is not None
    ours = libraries.resolve_libraries([Path(aria2c)])
    theirs = ldd(aria2c)
    assert {Path(p).name for p in ours} == {Path(p).name for p in theirs}
    real = {Path(p).name: str(src.resolve()) for p, src in ours.items()}
    assert real == {Path(p).name: r for p, r in theirs.items()}
    # In the image every library sits where the loader looks without a cache.
    assert all(p == "/lib64/ld-linux-x86-64.so.2" or p.startswith("/lib/x86_64-linux-gnu/")
               for p in ours)


ICU_PROBE = """
import ctypes, sys
major = sys.argv[1]
uc = ctypes.CDLL(f"libicuuc.so.{major}")
open_converter = getattr(uc, f"ucnv_open_{major}")
open_converter.restype = ctypes.c_void_p
for name in ("UTF-8", "ISO-2022-JP"):
    error = ctypes.c_int(0)
    found = open_converter(name.encode(), ctypes.byref(error))
    print(name, "found" if found else "none", error.value)
"""


def test_icus_libraries_load_against_the_empty_stand_in_and_report_missing_data(tmp_path):
    host = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libicudata.so.[0-9]*"))
    assert host, "libicu (which aria2c's libxml2 needs) is not installed"
    soname = next(p.name for p in host if re.fullmatch(r"libicudata\.so\.\d+", p.name))
    stand_in = icudata.empty_icu_data(f"/lib/x86_64-linux-gnu/{soname}", host[0])
    assert len(stand_in) < 4096
    (tmp_path / soname).write_bytes(stand_in)
    assert elf.read_elf(tmp_path / soname).needed == ()
    major = soname.rsplit(".", 1)[1]
    probe = subprocess.run([sys.executable, "-c", ICU_PROBE, major], capture_output=True, text=True,
                           env={"LD_LIBRARY_PATH": str(tmp_path), "LD_DEBUG": "bindings"})
    assert probe.returncode == 0, probe.stderr
    # libicuuc takes ICU's data from the stand-in, not from the host's library.
    assert re.search(rf"to {re.escape(str(tmp_path / soname))} .*`icudt{major}_dat'",
                     probe.stderr), probe.stderr
    # UTF-8 needs no data; a table converter finds none: ICU's "data file missing" error
    # (U_FILE_ACCESS_ERROR, 4), not a crash.
    assert probe.stdout.splitlines() == ["UTF-8 found 0", "ISO-2022-JP none 4"]


def test_read_elf_knows_a_dynamic_program_and_a_static_one():
    info = elf.read_elf(Path("/bin/ls").resolve())
    assert info.elf_class == 2 and info.machine == 62
    assert info.interp == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in info.needed
    busybox = shutil.which("busybox")
    if busybox:
        static = elf.read_elf(Path(busybox))
        assert static.interp is None and static.needed == ()


def test_read_elf_refuses_other_files(tmp_path):
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(ValueError, match="not an ELF file"):
        elf.read_elf(tmp_path / "script")


def test_a_missing_library_names_the_binary_and_the_fix(tmp_path, monkeypatch):
    program = tmp_path / "prog"
    shutil.copy("/bin/ls", program)
    real = elf.read_elf

    def fake(path: Path) -> elf.ElfInfo:
        info = real(path)
        if path == program:
            return elf.ElfInfo(info.elf_class, info.machine, info.interp,
                                  ("libnot-there.so.7",), (), ())
        return info

    monkeypatch.setattr(libraries, "read_elf", fake)
    with pytest.raises(InvalidArgument, match=r"libnot-there\.so\.7.*dpkg -S"):
        libraries.resolve_libraries([program])


# --- boot.env --------------------------------------------------------------------------------

NASTY = "it's a \"test\" with $HOME, `reboot`, $(poweroff), \\ and  two  spaces; rm -rf /"


def entry(spec: OSSpec) -> OSEntry:
    info = TorrentInfo("demo", "cd" * 20, 262144, (TorrentFile(("vmlinuz",), 1000),))
    return OSEntry("demo", Path("/srv/oss/demo"), False, spec, Path("/srv/t/demo.torrent"), info)


def source(text: str, *names: str) -> dict[str, str]:
    """Run `. boot.env` in a real shell and read the variables back, byte for byte."""
    script = text + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    return dict(zip(names, out.decode().split("\0")[:-1], strict=True))


def test_boot_env_values_survive_the_shell_exactly():
    spec = OSSpec(NASTY, "kexec", {"kernel": "vmlinuz", "initrd": "initrd.img",
                                   "cmdline": NASTY})
    cfg = Config(boottorrent=BootSection(seed_time=30))
    text = boot_env(entry(spec), cfg, server="10.1.2.1:8080")
    got = source(text, "BT_DISPNAME", "BT_SPEC_CMDLINE", "BT_SPEC_KERNEL", "BT_SEED_TIME",
                 "BT_NAME", "BT_SIZE_BYTES", "BT_REPORT_URL", "BT_HOME")
    assert got["BT_DISPNAME"] == NASTY
    assert got["BT_SPEC_CMDLINE"] == NASTY
    assert got["BT_SPEC_KERNEL"] == "vmlinuz"
    assert got["BT_SEED_TIME"] == "30"
    assert got["BT_NAME"] == "demo" and got["BT_SIZE_BYTES"] == "1000"
    assert got["BT_REPORT_URL"] == "http://10.1.2.1:8080/api/v1/clients/{mac}/events"
    # Nothing in a value ran or expanded.
    assert got["BT_HOME"] == ""


def test_boot_env_has_every_key_of_boot_json_and_nothing_else():
    spec = OSSpec("Demo", "image", {"image": "disk.img", "target": "/dev/sda",
                                    "after": "poweroff"})
    cfg = Config(boottorrent=BootSection(), aria2=Aria2Section(bt_enable_lpd=True))
    doc = boot_json(entry(spec), cfg, server="s:1")
    text = boot_env(entry(spec), cfg, server="s:1")
    names = [line.split("=", 1)[0] for line in text.splitlines() if not line.startswith("#")]

    def flat(prefix: str, d: dict) -> list[str]:
        out = []
        for k, v in d.items():
            name = f"{prefix}_{re.sub('[^A-Za-z0-9]', '_', k).upper()}"
            out += flat(name, v) if isinstance(v, dict) else [name]
        return out

    assert names == [*flat("BT", doc), "BT_ARIA2_OPTS"]
    got = source(text, "BT_SPEC_TARGET", "BT_SPEC_AFTER", "BT_ARIA2_OPTS",
                 "BT_ARIA2_BT_ENABLE_LPD")
    assert got["BT_SPEC_TARGET"] == "/dev/sda" and got["BT_SPEC_AFTER"] == "poweroff"
    assert got["BT_ARIA2_BT_ENABLE_LPD"] == "true"
    assert got["BT_ARIA2_OPTS"].split() == [f"--{k}={v}" for k, v in doc["aria2"].items()]


def test_shell_quote_handles_quotes_and_refuses_nul():
    assert shell_quote("a'b") == "'a'\\''b'"
    assert shell_quote("") == "''"
    with pytest.raises(ValueError):
        shell_quote("a\0b")
    out = subprocess.run(["sh", "-c", "printf %s " + shell_quote("'$`\\\"\n'")],
                         capture_output=True, text=True, check=True).stdout
    assert out == "'$`\\\"\n'"
