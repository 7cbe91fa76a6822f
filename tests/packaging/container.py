"""A fresh Debian system with systemd as PID 1, in a container, for the package's tests.

`base_root()` makes (once, cached under BOOTTORRENT_CACHE, default /var/cache/boottorrent)
a trixie root with debootstrap (minbase) plus systemd, dbus, man-db and bash-completion.
`Container.fresh()` copies it, so every run starts from a clean system; `boot()` starts
it with `systemd-nspawn -b --private-network`, so the container has its own network
namespace with only lo, and nothing it does reaches the host's network. `run()` executes
commands inside through nsenter into the namespaces of the container's PID 1 (no machined
or systemd as PID 1 is needed on the host).

With a private network the container cannot reach the archive, so `download()` fetches
the packages an install needs beforehand, from a non-booted nspawn of the same root with
the host's network, into an archive cache shared by runs (bind-mounted to
/var/cache/apt/archives in both).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SUITE = os.environ.get("BOOTTORRENT_SUITE", "trixie")
MIRROR = os.environ.get("BOOTTORRENT_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("BOOTTORRENT_CACHE", "/var/cache/boottorrent"))
ARCHIVES = CACHE / "apt-archives"
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "man-db", "bash-completion")
RECIPE = f"suite={SUITE} mirror={MIRROR} variant=minbase packages={','.join(BASE_PACKAGES)} v1"
STAMP = ".boottorrent-accept-base"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NSPAWN = ("systemd-nspawn", "--quiet", "--register=no", "--keep-unit")
# nspawn says this on a host whose /run is not a tmpfs: harmless.
NSPAWN_NOISE = "Attempted to remove disk file system under"


def log(message: str) -> None:
    print(f"    {message}", flush=True)


def _nspawn_pipe(root: Path, script: str, timeout: float, *extra: str) -> None:
    """Run `script` in `root` without booting it, with the host's network."""
    cmd = [*NSPAWN, "--pipe", "-D", str(root), "--setenv=DEBIAN_FRONTEND=noninteractive",
           *extra, "/bin/sh", "-ec", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"in {root}: {script!r} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _archives() -> list[str]:
    """nspawn options that share the archive cache (packages downloaded once)."""
    (ARCHIVES / "partial").mkdir(parents=True, exist_ok=True)
    return [f"--bind={ARCHIVES}:/var/cache/apt/archives"]


def _base_ok(base: Path) -> bool:
    stamp = base / STAMP
    return (stamp.is_file() and stamp.read_text().strip() == RECIPE
            and (base / "usr/lib/systemd/systemd").exists()
            and (base / "usr/bin/apt-get").exists())


def base_root() -> Path:
    """The cached base system; made (about a minute) when missing, broken or outdated."""
    base = CACHE / f"accept-base-{SUITE}"
    with _locked(f"accept-base-{SUITE}"):
        if _base_ok(base):
            log(f"reusing the base system {base}")
            return base
        new = base.with_name(base.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        start = time.monotonic()
        log(f"debootstrap {SUITE} (minbase) into {new} from {MIRROR}")
        debs = CACHE / f"debootstrap-{SUITE}"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE,
                        str(new), MIRROR], check=True, capture_output=True, timeout=900)
        log(f"installing {' '.join(BASE_PACKAGES)} in it")
        _nspawn_pipe(new, "apt-get update -qq; apt-get install -y -qq --no-install-recommends "
                     + " ".join(BASE_PACKAGES) + " >/dev/null", 900, *_archives())
        (new / STAMP).write_text(RECIPE + "\n")
        shutil.rmtree(base, ignore_errors=True)
        new.rename(base)
        log(f"base system ready in {time.monotonic() - start:.0f} s")
        return base


class Container:
    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.nspawn: subprocess.Popen | None = None
        self.pid1 = 0
        self.console = root.with_name(root.name + ".console.log")

    @classmethod
    def fresh(cls, name: str) -> Container:
        """A copy of the base system that is this container's alone."""
        base = base_root()
        root = CACHE / f"run-{name}"
        shutil.rmtree(root, ignore_errors=True)
        start = time.monotonic()
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
        log(f"fresh system {root} (copied in {time.monotonic() - start:.1f} s)")
        return cls(root, name)

    @property
    def _binds(self) -> list[str]:
        return _archives()

    def download(self, packages: str) -> None:
        """Fetch what `apt-get install <packages>` needs into the archive cache (host's
        network, container not booted); refresh the package lists first if needed."""
        install = f"apt-get install --download-only -y -qq --no-install-recommends {packages}"
        _nspawn_pipe(self.root, f"{install} >/dev/null 2>&1 || "
                     f"{{ apt-get update -qq && {install} >/dev/null; }}", 900, *self._binds)

    def boot(self, timeout: float = 90) -> None:
        console = open(self.console, "w")  # noqa: SIM115 (kept open for nspawn's lifetime)
        self.nspawn = subprocess.Popen(
            [*NSPAWN, "-D", str(self.root), "-M", self.name, "--boot", "--private-network",
             "--console=read-only", *self._binds],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
        )
        console.close()
        start = time.monotonic()
        deadline = start + timeout
        while not self.pid1:
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the container did not start; see {self.console}")
            self.pid1 = self._find_pid1()
            time.sleep(0.1)
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl is-system-running || true").stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the container's systemd is {state!r} after {timeout} s; "
                               f"see {self.console}")
        log(f"booted with systemd as PID 1 (host PID {self.pid1}) in "
            f"{time.monotonic() - start:.1f} s: {state}")
        if state == "degraded":
            log("failed units: " + self.run("systemctl --failed --no-legend").stdout.strip())

    def _find_pid1(self) -> int:
        """The host PID of the container's init: a descendant of nspawn that is PID 1 in
        its own PID namespace."""
        assert self.nspawn is not None
        todo = [self.nspawn.pid]
        while todo:
            parent = todo.pop()
            try:
                children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                try:
                    status = Path(f"/proc/{child}/status").read_text()
                except OSError:
                    continue
                nspid = next((ln.split()[1:] for ln in status.splitlines()
                              if ln.startswith("NSpid:")), [])
                if len(nspid) > 1 and nspid[-1] == "1":
                    return child
                todo.append(child)
        return 0

    def run(self, script: str, *, check: bool = False, timeout: float = 120,
            quiet: bool = True) -> subprocess.CompletedProcess:
        """Run a shell script inside the container as root, with a clean environment."""
        if not quiet:
            log(f"# {script}")
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "--", "/usr/bin/env", "-i",
               f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
               "DEBIAN_FRONTEND=noninteractive", "SYSTEMD_PAGER=", "/bin/sh", "-c", script]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the container: {script!r} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def sh(self, script: str, **kw) -> str:
        """run(check=True) and return its output, shown indented."""
        proc = self.run(script, check=True, quiet=False, **kw)
        out = proc.stdout.strip()
        for line in out.splitlines()[:40]:
            log(f"  {line}")
        return out

    def in_netns(self, *cmd: str) -> str:
        """A host program in the container's network namespace only (e.g. the host's ip)."""
        proc = subprocess.run(["nsenter", "-t", str(self.pid1), "-n", "--", *cmd],
                              check=True, capture_output=True, text=True)
        return proc.stdout

    def close(self, keep: bool = False) -> None:
        if self.nspawn is not None and self.nspawn.poll() is None:
            # SIGTERM makes nspawn shut the container down cleanly.
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        if keep:
            log(f"kept {self.root} (console: {self.console})")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
            self.console.unlink(missing_ok=True)
