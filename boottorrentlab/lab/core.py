"""The Lab: its network, a private bus, boottorrentd, and QEMU machines, torn down as one.

The daemon runs on a private system bus (devkit.bus.PrivateBus) with its own state
folder, so the host's boottorrentd, if any, is not involved. Teardown kills what the lab
started, by PID, and deletes its namespaces (and with them every interface in them); it
runs on success, failure, Ctrl-C and SIGTERM alike, unless --keep.

The Lab class is also what the end-to-end tests drive (tests/e2e).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.bus import PrivateBus
from boottorrentlab.devkit.daemon import DaemonProcess, venv_bin

from . import machines
from .config import DEFAULT_TIMEOUT, HTTP_PORT, POLL_S, LabConfig, LabError
from .machines import VM
from .network import LabNetwork
from .phase1cache import PHASE1_FILES
from .view import DaemonView
from .watch import Outcome, done, late, observe, problem


class Lab:
    """The lab's network, daemon and machines. `with Lab() as lab:` tears it all down."""

    def __init__(self, config: LabConfig | None = None, *, memory_mb: int = 512,
                 workdir: Path | None = None, out: TextIO | None = None) -> None:
        self.config = config or LabConfig()
        self.memory_mb = memory_mb
        self.tag = secrets.token_hex(3)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"boottorrent-lab-{self.tag}-"))
        # The seed and dnsmasq drop to nobody and must read the library and TFTP root.
        self.workdir.chmod(0o755)
        self.state_dir = self.workdir / "state"
        self.out = out
        self.vms: list[VM] = []
        self.network: LabNetwork | None = None
        self.bus: PrivateBus | None = None
        self.daemon: DaemonProcess | None = None
        self.view: DaemonView | None = None
        self.closed = False

    # --- setup ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    @property
    def net(self) -> LabNetwork:
        if self.network is None:
            raise LabError("the lab's network is not set up: call start() first")
        return self.network

    @property
    def server(self) -> str:
        return f"{self.net.host_ip}:{HTTP_PORT}"

    def start(self) -> None:
        """The network, the router advertisements, the bus and the daemon (no session)."""
        self.network = LabNetwork(self.workdir, self.tag)
        self.say(f"  network: {self.network.describe()}")
        self._daemon()

    def _daemon(self) -> None:
        config = self.workdir / "boottorrent.yaml"
        config.write_text(self.config.render(self.net.host_ip, self.net.dhcp_range))
        # dbus-daemon warns on stderr that it may not raise its fd limit (harmless here);
        # into a log file with it, so that it does not clutter the lab's output.
        with _stderr_to(self.workdir / "dbus-daemon.log"):
            self.bus = PrivateBus().start()
        self.daemon = DaemonProcess(config, self.state_dir, self.workdir / "run")
        # setsid: Ctrl-C in the terminal reaches the lab, which stops the daemon in order.
        self.daemon.start(self.bus.env,
                          prefix=["setsid", "ip", "netns", "exec", self.net.server.name])
        self.view = DaemonView(self.bus.address)
        pid = self.daemon.process.pid if self.daemon.process else "?"
        self.say(f"  boottorrentd: pid {pid} in {self.net.server.name}, private bus "
                 f"{self.bus.address}, state {self.state_dir}")

    def ctl(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """boottorrentctl against the lab's daemon."""
        if self.bus is None:
            raise LabError("the lab's bus is not running")
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.bus.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(f"boottorrentctl {' '.join(args)} failed: "
                           f"{(result.stderr or result.stdout).strip()}")
        return result

    def add_os(self, name: str, folder: Path, *, link: bool = False, from_source: bool = False,
               options: tuple[str, ...] = ()) -> None:
        """Add the OS in `folder`; link: serve the folder in place instead of a copy;
        from_source: make a live OS of a live-build tree or ISO or a root (add-os --from);
        options: further add-os options (e.g. ("--cmdline", "console=ttyS0"))."""
        where = ["--from", str(folder)] if from_source else [str(folder)]
        self.ctl("add-os", name, *where, *(["--link"] if link else []), *options)

    def install_phase1(self, source: Path) -> None:
        """Serve the phase-1 image in `source` (vmlinuz, initrd.img[, manifest.json])."""
        missing = [n for n in PHASE1_FILES if not (source / n).is_file()]
        if missing:
            raise LabError(f"{source} is not a phase-1 image: {', '.join(missing)} missing")
        dest = self.state_dir / "phase1"
        dest.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.is_file():
                target = dest / item.name
                target.unlink(missing_ok=True)
                try:
                    os.link(item, target)  # no copy of ~30 MB when on the same filesystem
                except OSError:
                    shutil.copyfile(item, target)

    def start_session(self) -> None:
        self.ctl("start")

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("status", "--json").stdout)

    # --- machines ------------------------------------------------------------------------

    def add_vm(self, firmware: str = "bios", disks: tuple[Path, ...] = ()) -> VM:
        """A machine's tap on the bridge and its MAC; power it on with power_on().

        `firmware`: bios, uefi, secureboot, httpboot or securehttpboot
        (machines.FIRMWARES); `disks`: raw image files it has as virtio disks.
        """
        index = len(self.vms) + 1
        if index > 255:
            raise LabError("the lab numbers at most 255 machines")
        problem = machines.missing_firmware(firmware)
        if problem:
            raise LabError(problem)
        vm = machines.new_vm(self.net.lan, index, self.workdir, firmware, disks)
        self.vms.append(vm)
        return vm

    def power_on(self, vm: VM) -> None:
        """Start the machine: PXE from its virtio NIC, console to a file."""
        machines.power_on(vm, self.net.lan, self.memory_mb)

    def type_into(self, vm: VM, text: str) -> None:
        """Send `text` to the machine's serial console, as typed on its keyboard."""
        machines.type_into(vm, text)

    def boot(self, count: int = 1, firmware: str = "bios") -> list[VM]:
        """Power on `count` new machines; firmware "mixed" takes bios, uefi and
        secureboot in turn."""
        kinds = machines.MIXED if firmware == "mixed" else (firmware,)
        vms = [self.add_vm(kinds[i % len(kinds)]) for i in range(count)]
        for vm in vms:
            self.power_on(vm)
        return vms

    # --- watching ------------------------------------------------------------------------

    def poll(self, marker: str = "") -> list[tuple[VM, str]]:
        """Refresh every powered-on machine from the daemon and its console.

        Returns the events since the last poll: (machine, what happened).
        """
        records = self.view.clients() if self.view else {}
        return [(vm, event) for vm in self.vms if vm.process is not None
                for event in observe(vm, records.get(vm.mac), marker)]

    def wait(self, vms: list[VM] | None = None, *, marker: str = "",
             timeout: float = DEFAULT_TIMEOUT,
             on_poll: Callable[[list[tuple[VM, str]]], None] | None = None) -> Outcome:
        """Poll until every machine in `vms` reached its target, or one cannot, or timeout.

        Reached: the daemon saw the machine hand over to its OS (stage booting or booted)
        and, when `marker` is given, the OS printed it on the serial console.
        """
        machines = list(self.vms if vms is None else vms)
        start = time.monotonic()

        def settled() -> Outcome | None:
            events = self.poll(marker)
            if on_poll is not None:
                on_poll(events)
            problems = [p for vm in machines if (p := problem(vm, marker))]
            if problems or all(done(vm, marker) for vm in machines):
                return Outcome(not problems, problems, time.monotonic() - start)
            return None

        try:
            return wait_until(settled, timeout=timeout, what="the machines",
                              interval=POLL_S)
        except TimeoutError:
            return Outcome(False, [late(vm, marker, timeout) for vm in machines
                                   if not done(vm, marker)], time.monotonic() - start)

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> Any:
        """Poll the machines until `predicate()` is true; LabError naming `what` if not."""
        def check() -> object:
            self.poll()
            return predicate()

        def describe() -> str:
            states = "; ".join(f"{vm.name}: {vm.describe_stage()}" for vm in self.vms)
            return f"timed out waiting for {what} ({states})"

        try:
            return wait_until(check, timeout=timeout, what=describe, interval=POLL_S)
        except TimeoutError as e:
            raise LabError(str(e)) from None

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop and remove everything the lab made; the problems met on the way."""
        if self.closed:
            return []
        self.closed = True
        problems: list[str] = []
        for vm in self.vms:
            with _collect(problems, f"stopping {vm.name}"):
                machines.power_off(vm)
        if self.view is not None:
            with _collect(problems, "closing the D-Bus connection"):
                self.view.close()
            self.view = None
        if self.daemon is not None and self.daemon.process is not None:
            with _collect(problems, "stopping boottorrentd"):
                try:
                    self.daemon.stop()
                except subprocess.TimeoutExpired:
                    problems.append("boottorrentd did not stop within 20 s; killed it")
                    self.daemon.kill()
        if self.bus is not None:
            with _collect(problems, "stopping the private bus"):
                self.bus.stop()
            self.bus = None
        if self.network is not None:
            # What still runs in the lab's namespaces was started by the lab (the daemon's
            # children when the daemon was killed): it ends with them.
            with _collect(problems, "removing the network"):
                problems += self.network.close()
        return problems

    def remove_files(self, *, keep_logs: bool) -> None:
        """Remove the work folder; with keep_logs, only the big files (state, images)."""
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for item in self.workdir.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)

    def teardown_script(self) -> str:
        """Shell commands that remove a lab left running with --keep."""
        procs = [vm.process for vm in self.vms]
        procs += [self.daemon.process if self.daemon else None,
                  self.network.ra if self.network else None,
                  self.bus.process if self.bus else None]
        pids = [str(p.pid) for p in procs if p is not None and p.poll() is None]
        lines = ["#!/bin/sh", "# Removes the BootTorrent lab " + self.tag]
        if pids:
            lines.append(f"kill {' '.join(pids)} 2>/dev/null; sleep 2")
        lines += self.network.teardown_commands() if self.network else []
        lines.append(f"rm -rf {self.workdir}" + (f" {self.bus.dir}" if self.bus else ""))
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    # Children started inside the block inherit the file as their stderr.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _collect(problems: list[str], what: str) -> Iterator[None]:
    # Teardown goes on after a failed step: the later steps still free their resources.
    try:
        yield
    except Exception as e:
        problems.append(f"{what}: {e}")
