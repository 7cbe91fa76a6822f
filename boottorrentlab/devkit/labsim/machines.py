"""The simulated machines: each a network namespace running the phase-1 agent's steps.

    DHCP        busybox udhcpc with the options a PXE firmware sends (60 PXEClient,
                93 client architecture, 94 UNDI version, 97 machine UUID)
    boot script GET /boot/<mac>.ipxe, as iPXE does (the registry's stage "menu")
    phase-1     optionally the kernel and initrd over HTTP, as iPXE fetches them
    reports     a POST to the report endpoint every second, built as the agent builds
                them from bt-download's status file (stages phase1, downloading,
                verifying, seeding, booting)
    the OS      the agent's own bt-download command line (devkit.agent.client_runner),
                in the namespace; the copy is checked against the source and removed
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ..agent import client_runner, read_status
from ..files import sha256
from ..lan import Netns
from .config import HTTP_PORT, OS_NAME, PAYLOAD, SimConfig
from .nshttp import http
from .results import MachineResult

# The machines' downloads run at this niceness: on a real LAN each has its own CPU, here
# they share the server's, whose daemon and children must not wait behind 200 aria2c.
MACHINE_NICE = 10
MACHINES_WEIGHT = 25  # cgroup v2 cpu.weight of all machines together (a process: 100)

# udhcpc's event script: configure the lease, print it for the simulator.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr replace "$ip/${mask:-24}" dev "$interface"
        echo "lease ip=$ip serverid=$serverid" ;;
    deconfig) ip -4 addr flush dev "$interface" ;;
esac
"""


class CpuGroup:
    """A CPU cgroup of low weight for the machines' processes.

    On a real LAN every machine has its own CPU; here 200 aria2c share the server's two
    cores, and niceness alone does not help: CFS weighs each task, and 400 tasks at nice
    10 still outweigh the daemon. As one group they weigh a quarter of one normal process
    (MACHINES_WEIGHT), and take what the server's processes leave; less starves them when
    other work shares the machine. Without a writable cgroup (v2 cpu.weight or v1
    cpu.shares) the machines run at MACHINE_NICE only."""

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        for root, knob, least in ((Path("/sys/fs/cgroup"), "cpu.weight", str(MACHINES_WEIGHT)),
                                  (Path("/sys/fs/cgroup/cpu"), "cpu.shares",
                                   str(MACHINES_WEIGHT * 1024 // 100))):
            if not (root / knob).exists() and not (root / "cgroup.controllers").exists():
                continue
            group = root / name
            try:
                group.mkdir()
                (group / knob).write_text(least)
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()
                continue
            self.path = group
            return

    def add(self, pid: int) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):  # it may have exited already
                (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.path = None


def progress_report(status: dict[str, str], stage: str | None) -> dict[str, Any] | None:
    """The agent's progress_report() (boottorrentd/phase1/agent/init) from bt-download's
    status file, on a machine that runs no VM; tests/unit/test_labsim_reports.py holds the
    two side by side. None: no report in this state."""
    if stage is None:
        stage = {"starting": "downloading", "downloading": "downloading",
                 "seeding": "seeding", "verifying": "verifying",
                 }.get(status.get("BT_STATE", "starting"))
        if stage is None:
            return None
        rates = (int(status.get("BT_DOWN_RATE", 0)), int(status.get("BT_UP_RATE", 0)))
    else:
        rates = (0, 0)
    return {"stage": stage, "os": OS_NAME,
            "progress": float(status.get("BT_PROGRESS", 0)),
            "downloaded_bytes": int(status.get("BT_DONE", 0)),
            "uploaded_bytes": int(status.get("BT_UPLOADED", 0)),
            "down_rate": rates[0], "up_rate": rates[1],
            "peers": int(status.get("BT_PEERS", 0))}


class Machines:
    """The lab's machines, booting from the full server at `host`; each keeps its files in
    a folder of its own. `prepare()`, then `boot()` each one."""

    def __init__(self, config: SimConfig, host: str, workdir: Path) -> None:
        self.config = config
        self.host = host
        self.workdir = workdir
        self.folder = workdir / "machines"
        self.namespaces: list[Netns] = []
        self.script = workdir / "udhcpc.sh"
        self.runner = workdir / "bt-client.sh"
        self.cpu = CpuGroup(f"bt-labsim-{os.getpid()}")
        self.payload_sha256 = ""  # what every copy must hash to

    def prepare(self) -> None:
        """The scripts the machines run and a folder for each."""
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        client_runner(self.workdir)
        self.folder.mkdir(exist_ok=True)
        for ns in self.namespaces:
            (self.folder / ns.name).mkdir()

    def status(self, ns: Netns) -> dict[str, str]:
        """Its bt-download's status file (empty before the download starts)."""
        return read_status(self.folder / ns.name / "dl" / "status")

    def close(self) -> None:
        self.cpu.remove()

    async def dhcp(self, ns: Netns, result: MachineResult) -> None:
        out = await run_in(ns, "cat", f"/sys/class/net/{ns.ifname}/address")
        result.mac = out.strip()
        uuid = hashlib.md5(result.mac.encode()).hexdigest()
        # What a BIOS PXE ROM sends: its class, architecture 0 (x86 BIOS), UNDI 2.1, UUID.
        out = await run_in(ns, "busybox", "udhcpc", "-i", ns.ifname, "-f", "-q", "-n",
                           "-t", "10", "-T", "2", "-A", "2", "-s", str(self.script),
                           "-V", "PXEClient:Arch:00000:UNDI:002001",
                           "-x", "0x5d:0000", "-x", "0x5e:010201", "-x", f"0x61:00{uuid}")
        lease = [line for line in out.splitlines() if line.startswith("lease ")]
        if not lease:
            raise RuntimeError(f"no DHCP lease: {out.strip()[-300:]}")
        result.ip = dict(kv.split("=", 1) for kv in lease[-1].split()[1:])["ip"]

    async def get(self, ns: Netns, path: str, result: MachineResult) -> bytes:
        status, body = await http(ns.name, self.host, HTTP_PORT, "GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        result.http_bytes += len(body)
        return body

    async def post(self, ns: Netns, report: dict[str, Any], result: MachineResult) -> None:
        body = json.dumps(report).encode()
        try:
            status, _ = await http(ns.name, self.host, HTTP_PORT, "POST",
                                   f"/api/v1/clients/{result.mac}/events", body, timeout=5)
        except (OSError, TimeoutError):
            status = 0
        # The agent's reporter does not retry either: the next report follows. One whose
        # answer did not come in time may still have arrived: the last one sent counts.
        result.last_report = report
        if status == 200:
            result.reports += 1
        else:
            result.report_errors += 1

    async def boot(self, ns: Netns, started: float, result: MachineResult) -> None:
        run = self.folder / ns.name
        os_dir = run / "os"
        await self.dhcp(ns, result)
        result.lease_s = time.monotonic() - started
        await self.get(ns, f"/boot/{result.mac}.ipxe", result)
        if self.config.phase1:
            for name in ("vmlinuz", "initrd.img"):
                await self.get(ns, f"/phase1/{name}?mac={result.mac}", result)
        await self.post(ns, {"stage": "phase1", "os": OS_NAME}, result)
        await self.post(ns, {"stage": "downloading", "os": OS_NAME}, result)
        log = open(run.parent / f"{ns.name}.log", "wb")  # noqa: SIM115 (closed below)
        download_start = time.monotonic() - started
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, "nice", "-n", str(MACHINE_NICE),
                str(self.runner),
                f"{self.host}:{HTTP_PORT}", OS_NAME, str(run), str(os_dir),
                stdout=log, stderr=subprocess.STDOUT)
            self.cpu.add(proc.pid)
            while proc.returncode is None:
                report = progress_report(self.status(ns), None)
                if report is not None:
                    await self.post(ns, report, result)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), self.config.report_interval)
        finally:
            log.close()
        status = self.status(ns)
        if proc.returncode != 0:
            raise RuntimeError(f"the download failed ({proc.returncode}): "
                               f"{status.get('BT_ERROR') or 'see ' + log.name}")
        # The torrent and boot spec came over HTTP too.
        result.http_bytes += sum(p.stat().st_size for p in
                                 (run / "boot.env", run / "dl" / "download.torrent"))
        copy = next(os_dir.rglob(PAYLOAD))
        digest = await asyncio.to_thread(sha256, copy)
        shutil.rmtree(os_dir)
        if digest != self.payload_sha256:
            raise RuntimeError(f"the downloaded {PAYLOAD} differs from the OS's")
        result.verified = True
        result.downloaded_s = download_start + float(status.get("BT_DOWNLOAD_SECONDS") or 0)
        result.done_s = time.monotonic() - started
        final = progress_report(status, "booting")
        assert final is not None
        await self.post(ns, final, result)


async def run_in(ns: Netns, *cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns.name, *cmd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {out.decode()[-300:]}")
    return out.decode()

