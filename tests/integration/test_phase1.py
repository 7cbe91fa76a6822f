"""The phase-1 image: built from this host, and booted under QEMU from a real daemon session.

The QEMU tests run the daemon in a server namespace of a test LAN and a QEMU client (TCG)
on a tap enslaved to the LAN's bridge, booted straight into the built phase-1 kernel and
initrd (-kernel/-initrd: the PXE part is the lab's). Each OS prints a unique marker on the
serial console, which is the proof that it was downloaded, verified and started.
"""

import json
import lzma
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from boottorrentd.config.sections import SeederSection
from boottorrentd.errors import InvalidArgument
from boottorrentd.phase1 import build as phase1
from boottorrentd.phase1 import userland
from boottorrentd.phase1.cpio import Archive, read_cpio_newc
from boottorrentd.phase1.qemu import build_qemu, qemu_image
from boottorrentd.session.seeding import CHILD
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.files import sha256
from boottorrentlab.devkit.lan import Lan, Netns
from tests.conftest import Daemon, world_readable_tmpdir
from tests.integration.test_session import config_text, payload_os

pytestmark = [pytest.mark.integration, pytest.mark.phase1]

HTTP_PORT = 8080
AGENT = Path(phase1.__file__).parent / "agent"
BT_DOWNLOAD = AGENT / "bt-download"
# Issue 15's goal for what every machine fetches over HTTP before BitTorrent starts; the
# real figure (19.7 MB with Debian 12's kernel) is printed by
# test_build_is_reproducible_and_small.
SIZE_CEILING = 20_000_000
QEMU_TIMEOUT = 120  # typically 40-60 s; a loaded CI machine needs the margin


# --- the image -------------------------------------------------------------------------------


@dataclass
class Built:
    folder: Path
    manifest: phase1.Manifest
    seconds: float

    @property
    def vmlinuz(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    state = Path(world_readable_tmpdir("bt-phase1-"))
    started = time.monotonic()
    steps: list[tuple[str, float]] = []
    manifest = phase1.build(state, progress=lambda step, f: steps.append((step, f)))
    seconds = time.monotonic() - started
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {s for s, _ in steps} == {"kernel", "modules", "programs", "agent", "compress",
                                      "install"}
    yield Built(state / "phase1", manifest, seconds)
    shutil.rmtree(state, ignore_errors=True)


def test_build_is_reproducible_and_small(built: Built, tmp_path):
    again = phase1.build(tmp_path)
    assert sha256(tmp_path / "phase1" / "vmlinuz") == sha256(built.vmlinuz)
    assert sha256(tmp_path / "phase1" / "initrd.img") == sha256(built.initrd)
    assert again.to_json() == built.manifest.to_json()

    sizes = built.vmlinuz.stat().st_size + built.initrd.stat().st_size
    print(f"\nphase-1: vmlinuz {built.vmlinuz.stat().st_size / 1e6:.2f} MB + initrd "
          f"{built.initrd.stat().st_size / 1e6:.2f} MB = {sizes / 1e6:.2f} MB "
          f"({built.manifest.initrd['compression']}), built in {built.seconds:.0f} s")
    assert sizes <= SIZE_CEILING
    on_disk = json.loads((built.folder / "manifest.json").read_text())
    assert on_disk["initrd"]["sha256"] == sha256(built.initrd)
    assert on_disk["vmlinuz"]["sha256"] == sha256(built.vmlinuz)


def test_the_manifest_lists_the_programs_their_libraries_and_the_drivers(built: Built):
    manifest = built.manifest
    paths = {f["path"] for f in manifest.files}
    assert {"/init", "/bin/busybox", "/bin/bt-download", "/usr/bin/aria2c",
            "/usr/sbin/kexec", "/lib64/ld-linux-x86-64.so.2",
            "/usr/share/boottorrent/live-hook"} <= paths
    libs = {p.rsplit("/", 1)[1] for p in paths if p.startswith("/lib/x86_64-linux-gnu/")}
    assert {"libc.so.6", "libaria2.so.0", "libstdc++.so.6", "libxenctrl.so.4.17"} <= libs \
        or {"libc.so.6", "libaria2.so.0", "libstdc++.so.6"} <= libs
    assert any(p.endswith("/virtio_net.ko") for p in paths)
    assert "virtio_net" in manifest.modules and "squashfs" in manifest.modules
    # KVM comes with the QEMU flavour only; ICU's 31 MB database is an empty stand-in.
    assert not {"kvm", "kvm_intel", "kvm_amd"} & set(manifest.modules)
    icu = [f for f in manifest.files if re.fullmatch(r".*/libicudata\.so\.\d+", f["path"])]
    assert all(f["size"] < 4096 for f in icu)
    # Dependencies load first.
    assert manifest.modules.index("failover") < manifest.modules.index("virtio_net")
    assert {"busybox-static", "aria2", "kexec-tools"} <= set(manifest.created_from)
    assert manifest.kernel_version in {p.name[len("vmlinuz-"):]
                                       for p in Path("/boot").glob("vmlinuz-*")}
    with open(built.folder / "manifest.json") as f:
        assert phase1.Manifest.from_json(f.read()) == manifest


def test_a_failed_build_leaves_the_previous_image(tmp_path, monkeypatch):
    state = tmp_path / "state"
    (state / "phase1").mkdir(parents=True)
    for name in phase1.FILES:
        (state / "phase1" / name).write_text(f"old {name}")
    monkeypatch.setattr(userland, "PROGRAMS", {"aria2c": "aria2", "no-such-program": "nothing"})
    with pytest.raises(InvalidArgument, match="apt install nothing"):
        phase1.build(state)
    assert (state / "phase1" / "vmlinuz").read_text() == "old vmlinuz"
    assert sorted(p.name for p in state.iterdir()) == [".phase1.lock", "phase1"]


# --- a daemon session on a test LAN ----------------------------------------------------------


@dataclass
class Server:
    lan: Lan
    srv: Netns
    daemon: Daemon

    @property
    def address(self) -> str:
        return f"{self.lan.address(1)}:{HTTP_PORT}"

    def add_os(self, name: str, folder: Path) -> None:
        self.daemon.ctl("add-os", name, str(folder))

    def clients(self) -> dict[str, dict]:
        return {c["mac"]: c for c in json.loads(self.daemon.ctl("clients", "--json").stdout)}

    def library_file(self, name: str, path: str) -> Path:
        return self.daemon.state_dir / "oss" / name / path


@pytest.fixture
def server(lan: Lan, daemon_dirs: Daemon) -> Server:
    srv = lan.add("srv")
    # The children run as the daemon's user: what runs them as nobody is the session
    # tests' business, and this keeps these tests to the client side.
    daemon_dirs.config.write_text(config_text(lan).replace("user: nobody", "user: null")
                                  + "client:\n  allow_disk_writes: true\n")
    daemon_dirs.prefix = ["ip", "netns", "exec", srv.name]
    daemon_dirs.start()
    return Server(lan, srv, daemon_dirs)


def client_ns(server: Server, index: int) -> Netns:
    ns = server.lan.add(f"c{index}")
    ns.add_address(20 + index)
    return ns


def bt_download(ns: Netns, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """bt-download as the swarm benchmark runs it: with the host's sh, aria2c and curl."""
    return ns.run("sh", str(BT_DOWNLOAD), *args, check=False, timeout=timeout)


def status_of(path: Path) -> dict[str, str]:
    out = subprocess.run(["sh", "-c", f'. "{path}"; set | grep "^BT_"'], capture_output=True,
                         text=True, check=True).stdout
    return {k: v.strip("'") for k, v in (line.split("=", 1) for line in out.splitlines())}


def test_bt_download_fetches_verifies_and_reports_on_a_plain_host(server: Server, tmp_path):
    src = payload_os(tmp_path / "oss" / "lab", 3 << 20)
    server.add_os("lab", src)
    server.daemon.ctl("start")
    ns = client_ns(server, 1)
    work = tmp_path / "work"
    result = bt_download(ns, "-s", "2", "-w", str(work), "-P", "1",
                         f"http://{server.address}/torrents/lab.torrent", str(tmp_path / "os"),
                         "--bt-tracker-interval=2", "--console-log-level=warn")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "os" / "lab" / "root.img").read_bytes() == (src / "root.img").read_bytes()
    lines = result.stdout.splitlines()
    assert any(line.startswith("bt-download: complete: 3145728 bytes in ") for line in lines)
    assert "bt-download: seeding for 2 s" in lines
    assert lines[-1].startswith("bt-download: done: verified 3145728 bytes")
    status = status_of(work / "status")
    assert status["BT_STATE"] == "done"
    assert int(status["BT_UPLOADED"]) >= 0 and status["BT_PROGRESS"] == "1.0000"
    assert status["BT_DONE"] == status["BT_TOTAL"] == "3145728"
    assert float(status["BT_DOWNLOAD_SECONDS"]) > 0 and status["BT_ERROR"] == ""


def corrupt(path: Path, offset: int) -> None:
    """Change a file after the seed checked it, keeping its time stamps, as bit rot or a
    careless copy would: the seed then sends pieces that fail their hash. (transmission
    checks a piece again before sending it when the file's mtime is newer than its last
    check, and then stops offering it: that case ends in bt-download's no-data timeout.)"""
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in f.read(64)))
        f.seek(offset)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_the_boot_env_route_serves_what_phase1_sources(server: Server, tmp_path):
    src = payload_os(tmp_path / "oss" / "lab", 1 << 20)
    server.add_os("lab", src)
    server.daemon.ctl("start")
    ns = client_ns(server, 1)
    env = tmp_path / "boot.env"
    ns.run("busybox", "wget", "-q", "-O", str(env), f"http://{server.address}/os/lab/boot.env")
    got = status_of(env)
    assert got["BT_TORRENT_URL"] == f"http://{server.address}/torrents/lab.torrent"
    assert got["BT_SPEC_METHOD"] == "live" and got["BT_SPEC_SQUASHFS"] == "root.img"
    assert got["BT_NAME"] == "lab" and got["BT_SEED_TIME"] == "0"
    assert "--enable-dht=false" in got["BT_ARIA2_OPTS"].split()
    missing = ns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     f"http://{server.address}/os/ghost/boot.env").stdout
    assert missing == "404"


def test_bt_download_gives_up_when_the_seed_sends_pieces_that_fail_their_hash(
        server: Server, tmp_path):
    src = payload_os(tmp_path / "oss" / "bad", 2 << 20, b"bad")
    server.add_os("bad", src)
    server.daemon.ctl("start")
    corrupt(server.library_file("bad", "root.img"), 1 << 20)
    ns = client_ns(server, 1)
    # After a bad piece the seed is asked again only ~20 s later: two strikes keep this short.
    # The no-data limit (-t 90) is far beyond them: reaching it would mean the strikes were
    # not counted.
    result = bt_download(ns, "-w", str(tmp_path / "work"), "-t", "90", "-f", "2",
                         f"http://{server.address}/torrents/bad.torrent", str(tmp_path / "os"),
                         "--bt-tracker-interval=2")
    assert result.returncode == 1
    assert "failed its hash check 2 times" in result.stderr, result.stdout + result.stderr
    # It gave up on the second strike, not on the no-data limit.
    assert "no data" not in result.stderr, result.stderr
    assert status_of(tmp_path / "work" / "status")["BT_STATE"] == "failed"


def test_bt_download_gives_up_when_no_data_comes(server: Server, tmp_path):
    # A torrent nobody seeds: the daemon is not running a session.
    folder = tmp_path / "oss" / "lonely"
    payload_os(folder, 1 << 20, b"lonely")
    server.add_os("lonely", folder)
    torrent = server.daemon.state_dir / "torrents" / "lonely.torrent"
    ns = client_ns(server, 1)
    result = bt_download(ns, "-t", "3", "-w", str(tmp_path / "work"), str(torrent),
                         str(tmp_path / "os"))
    assert result.returncode == 1
    assert "no data arrived for 3 s" in result.stderr


def test_bt_download_starts_aria2c_again_halfway_to_the_no_data_limit_and_keeps_its_pieces(
        server: Server, tmp_path):
    # The server's session restarts mid-download (a new seed, a tracker that forgot the
    # swarm) while this aria2c announces again only in 10 minutes: nobody knows of it, it
    # knows of nobody, until it starts anew and announces.
    size = 8 << 20
    src = payload_os(tmp_path / "oss" / "lab", size)
    server.add_os("lab", src)
    server.daemon.ctl("start")
    work = tmp_path / "work"
    download = client_ns(server, 1).popen(
        "sh", str(BT_DOWNLOAD), "-t", "30", "-w", str(work), "-P", "1",
        f"http://{server.address}/torrents/lab.torrent", str(tmp_path / "os"),
        "--bt-tracker-interval=600", "--max-download-limit=1M",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (work / "status").exists()
               and float(status_of(work / "status")["BT_PROGRESS"]) >= 0.25,
               timeout=60, what="a quarter of the OS")
    server.daemon.ctl("stop")
    had = int(status_of(work / "status")["BT_DONE"])
    server.daemon.ctl("start")
    out, err = download.communicate(timeout=120)
    assert download.returncode == 0, out + err
    assert "starting aria2c again for new peers" in out, out
    assert (tmp_path / "os" / "lab" / "root.img").read_bytes() == (src / "root.img").read_bytes()
    # The second aria2c went on from the pieces the first had: the new seed sent the rest.
    seeds = json.loads(server.daemon.ctl("status", "--json").stdout)["seeding"]
    sent = next(s["uploaded_bytes"] for s in seeds if s["name"] == "lab")
    assert sent <= size - had, (had, sent)


# --- QEMU clients ----------------------------------------------------------------------------


def marker_os(folder: Path, method: str, marker: str) -> Path:
    """A tiny OS of each method that prints `marker` on the serial console and powers off.

    kexec: this host's kernel with a busybox initramfs; bin: a busybox script; live: a
    squashfs root with busybox whose init is that script.
    """
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    script = f"#!/bin/sh\necho {marker}\nsync\npoweroff -f\n"
    folder.mkdir(parents=True)
    if method == "kexec":
        _version, kernel = phase1.find_kernel()
        root = Archive()
        root.add_file("bin/busybox", busybox, executable=True)
        root.add_symlink("bin/sh", "busybox")
        root.add_symlink("bin/echo", "busybox")
        root.add_symlink("bin/sync", "busybox")
        root.add_symlink("bin/poweroff", "busybox")
        root.add_file("init", f"#!/bin/sh\nexport PATH=/bin\n{script[10:]}".encode(),
                      executable=True)
        root.add_char_device("dev/console", 5, 1)
        shutil.copyfile(kernel, folder / "vmlinuz")
        (folder / "initrd.img").write_bytes(b"".join(root.chunks()))
        config = ("method: kexec\nkernel: vmlinuz\ninitrd: initrd.img\n"
                  "cmdline: console=ttyS0 quiet\n")
    elif method == "bin":
        (folder / "hello").write_text(script)
        config = "method: bin\nbin: hello\n"
    elif method == "image":
        (folder / "disk.img").write_bytes(marker.encode().ljust(1 << 20, b"\xa5"))
        config = "method: image\nimage: disk.img\nafter: poweroff\n"
    elif method == "live":
        tree = folder.parent / f"{folder.name}-root"
        (tree / "bin").mkdir(parents=True)
        (tree / "sbin").mkdir()
        for name in ("dev", "proc", "sys", "run", "tmp"):
            (tree / name).mkdir()
        (tree / "bin" / "busybox").write_bytes(busybox)
        (tree / "bin" / "busybox").chmod(0o755)
        for applet in ("sh", "echo", "sync", "poweroff"):
            (tree / "bin" / applet).symlink_to("busybox")
        (tree / "sbin" / "init").write_text(script.replace("#!/bin/sh\n",
                                                            "#!/bin/sh\nexport PATH=/bin\n"))
        (tree / "sbin" / "init").chmod(0o755)
        subprocess.run(["mksquashfs", str(tree), str(folder / "root.squashfs"), "-noappend",
                        "-quiet", "-all-root", "-comp", "xz"], check=True, capture_output=True)
        shutil.rmtree(tree)
        config = "method: live\nsquashfs: root.squashfs\ninit: /sbin/init\n"
    else:
        raise ValueError(method)
    (folder / "config.yaml").write_text(f"dispname: Marker OS ({method})\n{config}")
    return folder


@dataclass
class Vm:
    mac: str
    console: Path
    process: subprocess.Popen
    tap: str
    stages: list[str] = field(default_factory=list)

    def text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Vms:
    """QEMU clients on taps in the LAN's bridge; all killed (by PID) and removed at the end."""

    def __init__(self, server: Server, built: Built, folder: Path) -> None:
        self.server = server
        self.built = built
        self.folder = folder
        self.vms: list[Vm] = []

    def boot(self, os_name: str, *, append: str = "", disks: tuple[Path, ...] = (),
             initrd: Path | None = None) -> Vm:
        index = len(self.vms)
        mac = f"52:54:00:{secrets.randbelow(256):02x}:{secrets.randbelow(256):02x}:{index:02x}"
        tap = self.server.lan.add_tap()
        console = self.folder / f"vm{index}-console.log"
        cmdline = (f"console=ttyS0 boottorrent.server={self.server.address} "
                   f"boottorrent.os={os_name} boottorrent.mac={mac} {append}").strip()
        process = self.server.lan.popen(
            "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-nodefaults",
            "-no-user-config", "-display", "none", "-monitor", "none",
            "-serial", f"file:{console}", "-no-reboot",
            "-kernel", str(self.built.vmlinuz), "-initrd", str(initrd or self.built.initrd),
            "-append", cmdline,
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
            *(arg for disk in disks for arg in ("-drive", f"file={disk},if=virtio,format=raw")),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        vm = Vm(mac, console, process, tap)
        self.vms.append(vm)
        return vm

    def stage(self, vm: Vm) -> str:
        path = "/org/boottorrent1/client/" + vm.mac.replace(":", "")
        result = self.server.daemon.busctl("get-property", "org.boottorrent1", path,
                                           "org.boottorrent1.Client", "Stage", check=False)
        if result.returncode != 0:
            return ""
        return json.loads(result.stdout.split(" ", 1)[1])

    def wait_for(self, vm: Vm, text: str, timeout: float = QEMU_TIMEOUT) -> str:
        """Wait until `text` is on the console (or QEMU ends, or time is up), recording
        the daemon's stages of the machine meanwhile; the console."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stage = self.stage(vm)
            if stage and (not vm.stages or vm.stages[-1] != stage):
                vm.stages.append(stage)
            console = vm.text()
            if text in console or vm.process.poll() is not None:
                break
            time.sleep(0.3)
        # The last report may land a moment after the console shows its effect.
        time.sleep(1)
        stage = self.stage(vm)
        if stage and (not vm.stages or vm.stages[-1] != stage):
            vm.stages.append(stage)
        return vm.text()

    def close(self) -> None:
        for vm in self.vms:
            if vm.process.poll() is None:
                os.kill(vm.process.pid, signal.SIGKILL)
            vm.process.wait()


@pytest.fixture
def vms(server: Server, built: Built, tmp_path) -> Iterator[Vms]:
    machines = Vms(server, built, tmp_path)
    yield machines
    machines.close()


def booted(vms: Vms, method: str, tmp_path: Path, *, seed_time: int = 0) -> tuple[Vm, str]:
    marker = f"BOOTTORRENT-{method.upper()}-MARKER-{secrets.token_hex(4)}"
    name = f"marker-{method}"
    vms.server.add_os(name, marker_os(tmp_path / "oss" / name, method, marker))
    vms.server.daemon.ctl("start")
    started = time.monotonic()
    vm = vms.boot(name)
    console = vms.wait_for(vm, marker)
    took = time.monotonic() - started
    assert marker in console, f"no marker after {took:.0f} s; stages {vm.stages}:\n{console}"
    print(f"\n{method}: marker after {took:.1f} s; stages {vm.stages}")
    return vm, console


def test_a_qemu_client_boots_a_kexec_os_from_the_swarm(vms: Vms, tmp_path):
    vm, console = booted(vms, "kexec", tmp_path)
    assert "boottorrent: loaded" in console and "bt-download: complete" in console
    assert vm.stages.index("downloading") < vm.stages.index("booting")
    assert "failed" not in vm.stages


def test_a_qemu_client_runs_a_bin_os(vms: Vms, tmp_path):
    vm, _console = booted(vms, "bin", tmp_path)
    assert vm.stages.index("downloading") < vm.stages.index("booted")


def test_a_qemu_client_runs_a_live_os_from_ram(vms: Vms, tmp_path):
    vm, _console = booted(vms, "live", tmp_path)
    assert vm.stages.index("downloading") < vm.stages.index("booting")


def test_a_qemu_client_with_a_corrupted_os_reports_failed_and_keeps_a_shell(vms: Vms,
                                                                           tmp_path):
    marker = "NEVER-PRINTED"
    vms.server.add_os("broken", marker_os(tmp_path / "oss" / "broken", "kexec", marker))
    vms.server.daemon.ctl("start")
    corrupt(vms.server.library_file("broken", "vmlinuz"), 1 << 20)
    vm = vms.boot("broken", append="boottorrent.stall=30")
    console = vms.wait_for(vm, "rescue shell")
    assert "boottorrent: FAILED: downloading broken: " in console, console
    assert "failed its hash check" in console
    assert "rescue shell" in console
    client = vms.server.clients()[vm.mac]
    assert client["stage"] == "failed"
    assert "failed its hash check" in client["error"]
    assert marker not in console


def empty_disk(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def image_os(folder: Path, marker: str, size: int, *, compress: bool = False,
             target: str = "largest") -> bytes:
    """An image OS of `size` bytes that starts with `marker`; the raw image."""
    folder.mkdir(parents=True)
    raw = marker.encode().ljust(size, b"\xa5")
    name = "disk.img"
    if compress:
        name += ".zst"
        (folder / name).write_bytes(subprocess.run(["zstd", "-q", "-c"], input=raw,
                                                   capture_output=True, check=True).stdout)
    else:
        (folder / name).write_bytes(raw)
    (folder / "config.yaml").write_text(f"method: image\nimage: {name}\ntarget: {target}\n"
                                        "after: poweroff\n")
    return raw


def test_clients_write_raw_and_zstd_images_onto_their_disks_and_power_off(vms: Vms, tmp_path):
    raw_marker = f"BOOTTORRENT-RAW-{secrets.token_hex(4)}"
    zst_marker = f"BOOTTORRENT-ZST-{secrets.token_hex(4)}"
    raw = image_os(tmp_path / "oss" / "raw", raw_marker, 3 << 20)
    zst = image_os(tmp_path / "oss" / "zst", zst_marker, 5 << 20, compress=True,
                   target="/dev/vdb")
    vms.server.add_os("raw", tmp_path / "oss" / "raw")
    vms.server.add_os("zst", tmp_path / "oss" / "zst")
    vms.server.daemon.ctl("start")
    # The raw image goes to the largest of two disks, the compressed one to the disk named.
    small = empty_disk(tmp_path / "small.raw", 4 << 20)
    large = empty_disk(tmp_path / "large.raw", 8 << 20)
    first = empty_disk(tmp_path / "first.raw", 8 << 20)
    second = empty_disk(tmp_path / "second.raw", 6 << 20)
    raw_vm = vms.boot("raw", disks=(small, large))
    zst_vm = vms.boot("zst", disks=(first, second))
    raw_console = vms.wait_for(raw_vm, "image written; powering off")
    zst_console = vms.wait_for(zst_vm, "image written; powering off")

    assert raw_vm.process.wait(30) == 0, raw_console
    assert zst_vm.process.wait(30) == 0, zst_console
    assert "target disk /dev/vdb (8 MiB, rule largest)" in raw_console, raw_console
    assert large.read_bytes() == raw.ljust(8 << 20, b"\0")
    assert small.read_bytes() == bytes(4 << 20)
    assert second.read_bytes() == zst.ljust(6 << 20, b"\0")
    assert first.read_bytes() == bytes(8 << 20)
    assert "verified" in raw_console and "verified" in zst_console
    assert raw_vm.stages.index("downloading") < raw_vm.stages.index("booted")
    assert "writing disk.img.zst (5 MiB) to /dev/vdb" in zst_console
    assert "verifying /dev/vdb" in zst_console
    clients = vms.server.clients()
    assert clients[raw_vm.mac]["stage"] == clients[zst_vm.mac]["stage"] == "booted"
    assert clients[raw_vm.mac]["imaged_os"] == "raw"
    assert clients[zst_vm.mac]["imaged_os"] == "zst"


def test_a_client_whose_disk_is_too_small_or_missing_refuses_before_writing(vms: Vms, tmp_path):
    image_os(tmp_path / "oss" / "big", "BIG", 6 << 20)
    vms.server.add_os("big", tmp_path / "oss" / "big")
    vms.server.daemon.ctl("start")
    small = empty_disk(tmp_path / "small.raw", 4 << 20)
    tiny_vm = vms.boot("big", disks=(small,))
    bare_vm = vms.boot("big")
    tiny = vms.wait_for(tiny_vm, "rescue shell")
    bare = vms.wait_for(bare_vm, "rescue shell")

    assert "is too small for big's image (6 MiB, 6291456 bytes); nothing was written" in tiny
    assert "bt-download" not in tiny, tiny
    assert small.read_bytes() == bytes(4 << 20)
    assert "this machine has no disk to write big to" in bare, bare
    clients = vms.server.clients()
    assert clients[tiny_vm.mac]["stage"] == "failed"
    assert "too small" in clients[tiny_vm.mac]["error"]
    assert "no disk" in clients[bare_vm.mac]["error"]


def test_a_client_refuses_to_write_its_disk_when_the_server_does_not_allow_it(vms: Vms, tmp_path):
    config = vms.server.daemon.config
    config.write_text(config.read_text().replace("allow_disk_writes: true",
                                                 "allow_disk_writes: false"))
    vms.server.daemon.ctl("reload")
    image_os(tmp_path / "oss" / "lab", "LAB", 1 << 20)
    vms.server.add_os("lab", tmp_path / "oss" / "lab")
    vms.server.daemon.ctl("start")
    disk = empty_disk(tmp_path / "disk.raw", 4 << 20)
    vm = vms.boot("lab", disks=(disk,))
    console = vms.wait_for(vm, "rescue shell")

    assert "the server does not allow disk writes" in console, console
    assert "client.allow_disk_writes: true" in vms.server.clients()[vm.mac]["error"]
    assert disk.read_bytes() == bytes(4 << 20)
    refused = vms.server.daemon.ctl("assign", "52:54:00:00:00:01", "lab", check=False)
    assert refused.returncode != 0 and "disk writes are off" in refused.stderr


@pytest.fixture(scope="module")
def qemu_initrd(built: Built) -> Path:
    """phase-1's initrd with the QEMU flavour's archive after it, as iPXE loads the two."""
    build_qemu(built.folder.parent)
    both = built.folder.parent / "initrd-with-qemu.img"
    both.write_bytes(built.initrd.read_bytes() + qemu_image(built.folder.parent).read_bytes())
    return both


def test_the_qemu_flavour_brings_the_kvm_modules_with_their_load_list(built: Built,
                                                                      qemu_initrd):
    flavour = read_cpio_newc(lzma.decompress(qemu_image(built.folder.parent).read_bytes()))
    load_list = f"lib/modules/{built.manifest.kernel_version}/boottorrent-qemu.load"
    listed = flavour[load_list].data.decode().split()
    assert {phase1.module_name(p) for p in listed} >= {"kvm", "kvm_intel", "kvm_amd"}
    assert listed.index(next(p for p in listed if p.endswith("/kvm.ko"))) < \
        listed.index(next(p for p in listed if p.endswith("/kvm-intel.ko")))
    assert all(f"lib/modules/{built.manifest.kernel_version}/{p}" in flavour for p in listed)


def test_a_client_runs_a_qemu_os_and_seeds_it_to_others_while_the_vm_runs(
        vms: Vms, tmp_path, qemu_initrd):
    folder = payload_os(tmp_path / "oss" / "vm", 6 << 20, b"vm")
    (folder / "root.img").rename(folder / "disk.img")
    # A disk no BIOS can boot: the VM's firmware looks for a boot device for as long as it
    # runs, which is all this needs of it under nested TCG.
    (folder / "config.yaml").write_text(
        "method: qemu\nargs: -m 32 -nic none -drive file=disk.img,format=raw,if=virtio\n")
    vms.server.add_os("vm", folder)
    vms.server.daemon.ctl("start")
    vm = vms.boot("vm", initrd=qemu_initrd)
    # -nographic: the VM's firmware writes on this machine's console.
    console = vms.wait_for(vm, "SeaBIOS")
    assert "-nographic -m 32 -nic none -drive file=disk.img" in console, console
    assert "SeaBIOS" in console, console
    wait_until(lambda: vms.server.clients()[vm.mac]["stage"] == "running", timeout=30,
               what="the daemon to show the VM running")

    # With the server's seed stopped, a second machine can only get the OS from the first.
    children = json.loads(vms.server.daemon.ctl("status", "--json").stdout)["children"]
    seed = {c["name"]: c for c in children}[CHILD[SeederSection().engine]]["pid"]
    os.kill(seed, signal.SIGSTOP)
    try:
        before = vms.server.clients()[vm.mac]["uploaded_bytes"]
        result = bt_download(client_ns(vms.server, 1), "-w", str(tmp_path / "work"), "-t", "60",
                             f"http://{vms.server.address}/torrents/vm.torrent",
                             str(tmp_path / "got"), "--bt-tracker-interval=2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "got" / "vm" / "disk.img").read_bytes() == \
            (folder / "disk.img").read_bytes()
        wait_until(lambda: vms.server.clients()[vm.mac]["uploaded_bytes"] >= before + (6 << 20),
                   timeout=30, what="the first machine to report what it uploaded")
    finally:
        os.kill(seed, signal.SIGCONT)
    assert vms.server.clients()[vm.mac]["stage"] == "running"
    assert vm.process.poll() is None and "the VM ended" not in vm.text()
