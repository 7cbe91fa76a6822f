"""A lab of N simulated machines booting from the real daemon, for scale tests.

LabSim brings up a LAN with one full boot server (and optionally seed servers, server.py),
N machines running the phase-1 agent's steps (machines.py), and a bus sampler in a process
of its own (sampler.py); `LabSim(...).run()` returns what it measured (results.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from boottorrentd.util.wait import wait_until

from ..bus import PrivateBus
from ..lan import Lan, Netns
from ..shaping import ArpTable, bridge_side_counters, shape
from .config import (
    DHCP_FIRST,
    DHCP_LAST,
    HTTP_PORT,
    OS_NAME,
    PAYLOAD,
    SERVER_HOST,
    TRACKER_PORT,
    SimConfig,
)
from .machines import Machines
from .results import MachineResult, SimResult, latest, lost_reports, percentile
from .sampler import SamplerProcess, client_objects
from .server import SimServer


def daemon_rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class LabSim:
    """`with LabSim(SimConfig(...)) as sim: result = sim.run()`: a LAN, the daemon on a
    private bus in the server's namespace with one OS, and N machines booting from it.
    With `seed_servers`, further daemons in swarm.role seed join the swarm."""

    def __init__(self, config: SimConfig, workdir: Path | None = None) -> None:
        self.config = config
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bt-labsim-"))
        # The daemon's children run as nobody: they must read the state folder.
        self.workdir.chmod(0o755)
        self.arp = ArpTable()
        self.lan: Lan | None = None
        self.servers: list[SimServer] = []
        self.machines: Machines | None = None

    # --- set-up ----------------------------------------------------------------------------

    def __enter__(self) -> LabSim:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> SimServer:
        """The full server: DHCP, boot files, reports."""
        return self.servers[0]

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def bus(self) -> PrivateBus:
        return self.server.bus

    def ctl(self, *args: str, timeout: float = 300) -> str:
        return self.server.ctl(*args, timeout=timeout)

    def daemon_config(self, server: SimServer) -> dict[str, Any]:
        assert self.lan is not None
        others = [s.tracker for s in self.servers if s is not server]
        doc: dict[str, dict[str, Any]] = {
            "boottorrent": {"version": 0, "host_ip": server.host, "timeout": 0,
                            "default_os": OS_NAME, "seed_time": self.config.seed_time},
            "dnsmasq": {"interface": "eth0", "dhcp_range":
                        f"{self.lan.address(DHCP_FIRST)},{self.lan.address(DHCP_LAST)},1h"},
            "opentracker": {"port": TRACKER_PORT},
            "children": {"user": "nobody"},
            "tracker": {"announce_interval": 5},
            "http": {"port": HTTP_PORT},
            # The LAN is the simulator's own: no other DHCP server can answer.
            "dhcp": {"probe_seconds": 1},
            "swarm": {"role": "full" if server is self.server else "seed",
                      "other_trackers": others},
        }
        for section, values in self.config.extra.items():
            doc.setdefault(section, {}).update(values)
        return doc

    def start(self) -> None:
        n = self.config.machines
        if n > DHCP_LAST - DHCP_FIRST + 1:
            raise ValueError(f"at most {DHCP_LAST - DHCP_FIRST + 1} machines fit the LAN's "
                             "DHCP range")
        if 1 + self.config.seed_servers >= DHCP_FIRST:
            raise ValueError(f"at most {DHCP_FIRST - 2} seed servers fit below the DHCP range")
        self.arp.size_for(n + 1 + self.config.seed_servers)
        self.lan = Lan()
        for i in range(1 + self.config.seed_servers):
            ns = self.lan.add(f"srv{i}")
            shape(ns, self.config.server_rate, self.config.server_rate)
            self.servers.append(SimServer(ns, self.lan.address(SERVER_HOST + i),
                                          self.workdir / f"server{i}"))
        self.machines = Machines(self.config, self.host, self.workdir)
        for i in range(n):
            ns = self.lan.add(f"m{i}")
            shape(ns, self.config.rate, self.config.rate)
            self.machines.namespaces.append(ns)
        for server in self.servers:
            server.start(self.daemon_config(server), server.ns.name)
        self._add_os()
        for server in self.servers:
            server.ctl("start")
        for server in self.servers:
            wait_until(server.seeding, timeout=120, interval=0.2,
                       what=f"the daemon in {server.ns.name} to seed {OS_NAME}")

    def _add_os(self) -> None:
        """The same OS on every server: the same files make the same torrent."""
        src = self.workdir / "src" / OS_NAME
        src.mkdir(parents=True)
        src.chmod(0o755)
        data = random.Random(15).randbytes(self.config.size)
        assert self.machines is not None
        self.machines.payload_sha256 = hashlib.sha256(data).hexdigest()
        (src / PAYLOAD).write_bytes(data)
        (src / "config.yaml").write_text(
            f"dispname: Simulated OS\nmethod: live\nsquashfs: {PAYLOAD}\n")
        for server in self.servers:
            server.ctl("add-os", OS_NAME, str(src))
        shutil.rmtree(src.parent)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self.lan is not None:
            self.lan.close()
            self.lan = None
        if self.machines is not None:
            self.machines.close()
        self.arp.restore()

    def remove_files(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> SimResult:
        return asyncio.run(self._run())

    async def _stop_server_mid_download(self, started: float) -> float:
        """Stop the configured server once the machines have on average stop_at_progress
        of the OS; when, in seconds after the start."""
        share = self.config.stop_at_progress
        assert share is not None and self.machines is not None
        while True:
            shares = [float(self.machines.status(ns).get("BT_PROGRESS", 0))
                      for ns in self.machines.namespaces]
            if sum(shares) / len(shares) >= share:
                break
            await asyncio.sleep(0.5)
        server = self.servers[self.config.stop_server]
        at = time.monotonic() - started
        await asyncio.to_thread(server.stop)
        return at

    async def _run(self) -> SimResult:
        assert self.lan is not None and self.machines is not None
        machines = self.machines
        machines.prepare()
        results = [MachineResult(ns.name) for ns in machines.namespaces]
        before = bridge_side_counters(self.lan)
        seed_before = [s.uploaded() for s in self.servers]
        daemon_pid = self.server.pid
        peak_rss = 0
        sampler = SamplerProcess(self.bus.address, self.config.sample_interval)
        await sampler.start()
        started = time.monotonic()
        stopper = (asyncio.create_task(self._stop_server_mid_download(started))
                   if self.config.stop_at_progress is not None else None)

        async def boot(i: int, ns: Netns) -> None:
            try:
                await machines.boot(ns, started, results[i])
            except Exception as e:
                results[i].error = f"{type(e).__name__}: {e}"

        boots = [asyncio.create_task(boot(i, ns)) for i, ns in enumerate(machines.namespaces)]
        _, pending = await asyncio.wait(boots, timeout=self.config.timeout)
        for task in pending:
            task.cancel()
        for i, task in enumerate(boots):
            if task in pending:
                results[i].error = f"not done within {self.config.timeout:.0f} s"
        await asyncio.gather(*pending, return_exceptions=True)
        stopped_at = None
        if stopper is not None:
            if stopper.done():
                stopped_at = round(stopper.result(), 1)
            else:
                stopper.cancel()
                await asyncio.gather(stopper, return_exceptions=True)
        latencies, signals_by_second = await sampler.stop()
        lost: list[str] | None = None
        if self.server.running:
            peak_rss = daemon_rss_peak_kib(daemon_pid)
            # The daemon takes reports in order: by now every report has been answered.
            lost = lost_reports(results, await client_objects(self.bus.address))
        after = bridge_side_counters(self.lan)
        sent = [after[s.ns.peer][0] - before[s.ns.peer][0] for s in self.servers]
        uploaded = [(s.uploaded() if s.running else s.seed_uploaded) - b
                    for s, b in zip(self.servers, seed_before, strict=True)]

        per_second = list(signals_by_second.values())
        return SimResult(
            machines=len(results), rate_bit_s=self.config.rate,
            server_rate_bit_s=self.config.server_rate, size_bytes=self.config.size,
            t_download_all_s=latest([r.downloaded_s for r in results]),
            t_all_s=latest([r.done_s for r in results]),
            leases=sum(1 for r in results if r.ip),
            verified=sum(1 for r in results if r.verified),
            reports_lost=lost, server_sent_bytes=sum(sent), servers_sent_bytes=sent,
            http_bytes=sum(r.http_bytes for r in results),
            seed_uploaded_bytes=sum(uploaded), servers_seed_uploaded_bytes=uploaded,
            stopped_server_at_s=stopped_at,
            dbus_calls=len(latencies),
            dbus_p50_ms=round(percentile(latencies, 0.5), 2),
            dbus_p99_ms=round(percentile(latencies, 0.99), 2),
            dbus_max_ms=round(max(latencies, default=0.0), 2),
            properties_changed=sum(per_second),
            properties_changed_peak_per_s=max(per_second, default=0),
            daemon_peak_rss_kib=peak_rss,
            failures=[f"{r.name} ({r.mac or 'no MAC'}): {r.error}" for r in results if r.error],
            per_machine=results)
