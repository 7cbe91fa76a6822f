"""Fixtures on the devkit: a private system bus, the real daemon, and a virtual LAN."""

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from boottorrentlab.devkit.bus import PrivateBus
from boottorrentlab.devkit.daemon import DaemonProcess
from boottorrentlab.devkit.lan import Lan

# Tests send SIGINT to what they start (Ctrl-C of the lab, busctl monitor). A shell that
# runs the suite as a background job starts it with SIGINT ignored, and an ignored signal
# stays ignored in every child; a handler of our own is reset to the default on exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

MINIMAL_CONFIG = "boottorrent:\n  version: 0\n"


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return pid > 0 and "State:\tZ" not in status


_WORLD_READABLE: list[Path] = []


def world_readable_tmpdir(prefix: str) -> Path:
    """A folder under /tmp that the run removes at its end."""
    # pytest's tmp_path is 0700 under root; callers run as nobody must reach the socket.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    _WORLD_READABLE.append(path)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for path in _WORLD_READABLE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def system_bus() -> Iterator[PrivateBus]:
    with PrivateBus() as bus:
        yield bus


class Daemon(DaemonProcess):
    def __init__(self, bus: PrivateBus, config: Path, state_dir: Path, runtime_dir: Path) -> None:
        super().__init__(config, state_dir, runtime_dir)
        self.bus = bus
        # Runs the daemon through another command, e.g. nsenter into a mount namespace.
        self.prefix: list[str] = []

    def start(self, env: dict[str, str] | None = None) -> None:  # type: ignore[override]
        super().start(env or self.bus.env, self.prefix)

    ctl_path = BIN / "boottorrentctl"

    def ctl(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.ctl_path), *args], env=self.bus.env,
                                capture_output=True, text=True, timeout=300, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"boottorrentctl {' '.join(args)} failed "
                                 f"({result.returncode}): {result.stderr}")
        return result

    def monitor(self, member: str, *matches: str) -> subprocess.Popen:
        """busctl monitor of the Manager's signal `member` and of what `matches` (JSON lines
        on stdout), returned once the bus has made it a monitor: nothing sent after this is
        missed."""
        proc = subprocess.Popen(
            ["busctl", f"--address={self.bus.address}", "--match",
             f"type='signal',interface='org.boottorrent1.Manager',member='{member}'",
             *(f"--match={match}" for match in matches),
             "monitor", "--json=short"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        assert proc.stderr is not None
        said = proc.stderr.readline()  # busctl says so once it is a monitor, or fails
        assert said.startswith("Monitoring bus message stream"), said
        return proc

    def busctl(self, *args: str, user: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["busctl", f"--address={self.bus.address}", *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed: {result.stderr}")
        return result


@pytest.fixture
def daemon_dirs(system_bus: PrivateBus) -> Iterator[Daemon]:
    tmp = world_readable_tmpdir("bt-daemon-")
    config = tmp / "boottorrent.yaml"
    config.write_text(MINIMAL_CONFIG)
    d = Daemon(system_bus, config, tmp / "state", tmp / "run")
    yield d
    if d.process is not None:
        d.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def daemon(daemon_dirs: Daemon) -> Daemon:
    daemon_dirs.start()
    return daemon_dirs


def make_os(folder: Path, *, kernel: bytes = b"kernel" * 1000, initrd: bytes = b"initrd" * 3000,
            config: str | None = "dispname: Test OS\nmethod: kexec\nkernel: vmlinuz\n"
            "initrd: initrd.img\ncmdline: quiet\n") -> Path:
    """A small kexec OS folder, as a user would prepare one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vmlinuz").write_bytes(kernel)
    (folder / "initrd.img").write_bytes(initrd)
    if config is not None:
        (folder / "config.yaml").write_text(config)
    return folder


@pytest.fixture
def lan() -> Iterator[Lan]:
    """A LAN whose bridge lives in a namespace of its own: nothing on the host."""
    net = Lan()
    yield net
    net.close()
