"""dnsmasq as a session runs it: the real dnsmasq, real DHCP/PXE clients, network namespaces."""

import asyncio
import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from boottorrentd.clients.registry import Asker
from boottorrentd.config import Config, parse_config
from boottorrentd.errors import InvalidArgument
from boottorrentd.session.children.dnsmasq import IPXE_DIR, Dnsmasq
from boottorrentd.session.children.leases import PHASE1_VENDOR_CLASS, LeaseEvent
from boottorrentlab.devkit.lan import Lan, Netns
from tests.conftest import world_readable_tmpdir
from tests.lanclients import PXE_CLIENT, dhcp, in_range, mac_of, pxe, tlv, write_udhcpc_script

pytestmark = pytest.mark.integration

@pytest.fixture
def runtime() -> Iterator[Path]:
    # dnsmasq drops to nobody, who must reach the TFTP root: not pytest's 0700 tmp_path.
    base = world_readable_tmpdir("bt-dnsmasq-")
    yield base / "dnsmasq"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def udhcpc_script(tmp_path: Path) -> Path:
    return write_udhcpc_script(tmp_path)


def make_config(lan: Lan, *, mode: str = "full", tftp: bool = True, user: str | None = "nobody",
                bind_interfaces: bool = True, uefi_loader: str = "shim") -> Config:
    dhcp_range = (f"{lan.address(100)},{lan.address(150)},1h" if mode == "full"
                  else lan.address(0))
    return parse_config({
        "boottorrent": {"version": 0, "host_ip": lan.address(1)},
        "dnsmasq": {"interface": "eth0", "user": user, "enable_tftp": tftp,
                    "bind_interfaces": bind_interfaces, "dhcp_range": dhcp_range},
        "dhcp": {"mode": mode},
        "boot": {"uefi_loader": uefi_loader},
    })


class Server:
    """A dnsmasq in a namespace, started and known to be listening; its log collected."""

    def __init__(self, ns: Netns, argv: list[str]) -> None:
        self.proc = ns.popen(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        self.lines: list[str] = []
        self._started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        # dnsmasq logs "started" once its DHCP and TFTP sockets are bound.
        if not self._started.wait(10) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"dnsmasq did not start:\n{self.log}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "started, version" in line:
                self._started.set()
        self._started.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def user(self) -> str:
        """Who dnsmasq runs as now (`ip netns exec` execs it: same PID)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        return pwd.getpwuid(int(uid)).pw_name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start(ns: Netns, dns: Dnsmasq) -> Server:
    return Server(ns, dns.prepare().argv)


# --- the config ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "proxy"])
@pytest.mark.parametrize("tftp", [True, False], ids=["tftp", "no-tftp"])
def test_rendered_config_passes_dnsmasq_test_and_keeps_everything_in_runtime_dir(
        lan: Lan, runtime: Path, mode: str, tftp: bool):
    dns = Dnsmasq(make_config(lan, mode=mode, tftp=tftp), runtime, dhcp_mode=mode)
    spec = dns.prepare()
    result = subprocess.run([*spec.argv, "--test"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax check OK" in result.stderr

    lines = dns.config_path.read_text().splitlines()
    assert lines == dns.render_config().splitlines()
    for line in ["port=0", "interface=eth0", "bind-interfaces", "keep-in-foreground",
                 "log-facility=-", "pid-file=", "user=nobody", "script-on-renewal",
                 "dhcp-match=set:efi64,option:client-arch,7",
                 "dhcp-match=set:efi64,option:client-arch,9",
                 "dhcp-userclass=set:ipxe,iPXE",
                 "dhcp-option-force=tag:ipxe,encap:175,176,1"]:
        assert line in lines
    if mode == "proxy":
        assert f"dhcp-range={lan.address(0)},proxy,255.255.255.0" in lines
        assert any(line.startswith("pxe-service=") for line in lines)
    else:
        assert f"dhcp-range={lan.address(100)},{lan.address(150)},1h" in lines
        assert not any(line.startswith("pxe-service=") for line in lines)
    assert ("enable-tftp" in lines) == tftp
    assert dns.tftp_root.is_dir() == tftp
    # Every file dnsmasq reads or writes is in runtime_dir (pid file off: "pid-file=").
    paths = [value for line in lines if "=" in line and not line.startswith("#")
             for value in line.split("=", 1)[1].split(",") if value.startswith("/")]
    assert paths and all(Path(p).is_relative_to(runtime) for p in paths), paths
    assert sorted(p.name for p in runtime.iterdir()) == sorted(
        ["dnsmasq.conf", "lease-event", "lease-events.sock", *(["tftp"] if tftp else [])])
    dns.close()


def test_config_follows_bind_interfaces_and_defaults_to_the_daemons_own_user(lan: Lan,
                                                                           runtime: Path):
    lines = Dnsmasq(make_config(lan, user=None, bind_interfaces=False),
                    runtime).render_config().splitlines()
    assert "bind-interfaces" not in lines
    assert "user=root" in lines  # the tests run as root, like the daemon
    lines = Dnsmasq(make_config(lan), runtime, user="dnsmasq").render_config().splitlines()
    assert "user=dnsmasq" in lines


def test_uefi_ipxe_falls_back_to_ipxe_efi_without_snponly(lan: Lan, runtime: Path,
                                                          tmp_path: Path):
    ipxe = tmp_path / "ipxe"
    ipxe.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi"):
        (ipxe / name).write_bytes(name.encode() * 100)
    dns = Dnsmasq(make_config(lan, uefi_loader="ipxe"), runtime, ipxe_dir=ipxe)
    dns.prepare()
    assert "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi" in dns.render_config().splitlines()
    assert (dns.tftp_root / "ipxe.efi").read_bytes() == (ipxe / "ipxe.efi").read_bytes()
    assert not (dns.tftp_root / "snponly.efi").exists()
    dns.close()


# --- full DHCP and TFTP ----------------------------------------------------------------------


def test_full_dhcp_gives_an_address_in_range_and_the_loader_for_the_clients_firmware(
        lan: Lan, runtime: Path, udhcpc_script: Path):
    srv, cli = lan.add("srv"), lan.add("cli")
    host = srv.add_address(1)
    dns = Dnsmasq(make_config(lan), runtime)
    server = start(srv, dns)
    url = f"http://{host}:8080/boot.ipxe"

    bios = dhcp(cli, udhcpc_script)
    assert in_range(bios["ip"], lan.address(100), lan.address(150)), server.log
    assert bios["boot_file"] == "undionly.kpxe"
    assert bios["siaddr"] == bios["serverid"] == host

    for arch in ("0007", "0009"):
        efi = dhcp(cli, udhcpc_script, "-x", f"0x5d:{arch}")  # option 93, client arch
        # The signed chain: shim, which boots with Secure Boot on or off.
        assert efi["boot_file"] == "shimx64.efi", server.log
        assert efi["siaddr"] == host

    # UEFI HTTP Boot (client arch 16) gets a URL, to iPXE: Debian 12's GRUB has no HTTP.
    http_boot = dhcp(cli, udhcpc_script, "-V", "HTTPClient", "-x", "0x5d:0010")
    assert http_boot["boot_file"] == f"http://{host}:8080/uefi/snponly.efi", server.log
    # The answer must name HTTPClient too, or the firmware ignores it (dnsmasq logs hex).
    echoed = ":".join(f"{b:02x}" for b in b"HTTPClient")
    assert f"option: 60 vendor-class  {echoed}" in server.log

    # udhcpc sends an unknown option's value as hex: 69505845 is "iPXE" (option 77).
    ipxe = dhcp(cli, udhcpc_script, "-x", "77:69505845")
    assert ipxe["boot_file"] == url, server.log
    ipxe_efi = dhcp(cli, udhcpc_script, "-x", "77:69505845", "-x", "0x5d:0007")
    assert ipxe_efi["boot_file"] == url
    assert "sent size:  4 option:175" in server.log  # iPXE's no-pxedhcp went out
    dns.close()


def test_tftp_serves_the_loaders_grub_config_phase1_and_qemus_initramfs_as_nobody(
        lan: Lan, runtime: Path, udhcpc_script: Path, tmp_path: Path):
    srv, cli = lan.add("srv"), lan.add("cli")
    host = srv.add_address(1)
    phase1 = runtime.parent / "phase1"  # world-readable, as the daemon's state folder
    phase1.mkdir()
    (phase1 / "vmlinuz").write_bytes(b"kernel" * 1000)
    # phase-1's QEMU flavour, built beside it after the session started.
    qemu = runtime.parent / "phase1-qemu"
    # What earlier versions left in the TFTP root: a link to the phase-1 folder itself.
    (runtime / "tftp").mkdir(parents=True)
    (runtime / "tftp" / "phase1").symlink_to(phase1)
    dns = Dnsmasq(make_config(lan, user="nobody"), runtime, phase1_dir=phase1)
    server = start(srv, dns)
    dns.write_grub_config("echo hello\n")
    assert server.user == "nobody"
    dhcp(cli, udhcpc_script)  # the client's address, as PXE would get it
    wanted = {name: src.read_bytes() for name, src in dns.loaders().items()}
    assert set(wanted) == {"undionly.kpxe", "shimx64.efi", "grubx64.efi"}
    qemu.mkdir()
    (qemu / "qemu.img").write_bytes(b"qemu" * 1000)
    wanted |= {"grub/grub.cfg": b"echo hello\n", "phase1/vmlinuz": b"kernel" * 1000,
               "phase1/qemu.img": b"qemu" * 1000}
    for name, data in wanted.items():
        out = tmp_path / name.replace("/", "-")
        result = cli.run("busybox", "tftp", "-g", "-r", name, "-l", str(out), host, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}\n{server.log}"
        assert out.read_bytes() == data
    # Nothing else in the TFTP root: only the loaders are served.
    result = cli.run("busybox", "tftp", "-g", "-r", "../dnsmasq.conf", "-l",
                     str(tmp_path / "conf"), host, check=False)
    assert result.returncode != 0
    dns.close()


# --- proxyDHCP -------------------------------------------------------------------------------


def test_proxy_dhcp_leaves_the_address_to_the_site_server_and_gives_pxe_the_boot_file(
        lan: Lan, runtime: Path, udhcpc_script: Path, tmp_path: Path):
    srv, site, cli = lan.add("srv"), lan.add("site"), lan.add("cli")
    host, site_ip = srv.add_address(1), site.add_address(2)
    first, last = lan.address(50), lan.address(60)
    # The site's own DHCP server: plain dnsmasq, no PXE options at all.
    site_server = Server(site, [
        "dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--log-facility=-",
        "--port=0", "--interface=eth0", "--bind-interfaces", "--no-ping", "--pid-file=",
        f"--dhcp-range={first},{last},1h", f"--dhcp-leasefile={runtime.parent}/site.leases",
    ])
    dns = Dnsmasq(make_config(lan, mode="proxy"), runtime, dhcp_mode="proxy")
    server = start(srv, dns)
    logs = f"{server.log}\n{site_server.log}"

    # A BIOS PXE ROM's DHCPDISCOVER: an address from the site, PXE options from us.
    offers = {offer["from"]: offer for offer in pxe(cli, 0, "discover")}
    assert set(offers) == {host, site_ip}, logs
    assert in_range(offers[site_ip]["yiaddr"], first, last)
    assert "60" not in offers[site_ip]["options"] and "43" not in offers[site_ip]["options"]
    ours = offers[host]
    assert ours["yiaddr"] == "0.0.0.0"
    assert ours["options"]["60"] == PXE_CLIENT
    pxe_options = tlv(ours["options"]["43"])
    boot_type = pxe_options[9][:2]  # the menu's only item
    assert pxe_options[8] == boot_type + bytes([1]) + IPv4Address(host).packed  # boot server

    # A UEFI ROM is sent to our port 4011; iPXE gets its script in the offer itself.
    (efi,) = [o for o in pxe(cli, 7, "discover") if o["from"] == host]
    assert (efi["yiaddr"], efi["siaddr"]) == ("0.0.0.0", host)
    (ipxe,) = [o for o in pxe(cli, 0, "discover", user_class="iPXE") if o["from"] == host]
    assert (ipxe["yiaddr"], ipxe["siaddr"]) == ("0.0.0.0", host)
    assert ipxe["file"] == f"http://{host}:8080/boot.ipxe"

    # The client takes the site's address (a plain DHCP client: we stay silent)...
    lease = dhcp(cli, udhcpc_script)
    assert lease["serverid"] == site_ip and in_range(lease["ip"], first, last), logs
    assert lease["boot_file"] == ""
    # ...and asks us for the boot file, as PXE does next, from that address.
    (bios_ack,) = pxe(cli, 0, "request", host, (boot_type + bytes(2)).hex())
    assert (bios_ack["from"], bios_ack["siaddr"]) == (host, host)
    assert bios_ack["file"] == "undionly.kpxe", server.log
    (efi_ack,) = pxe(cli, 7, "request", host, "")
    assert efi_ack["file"] == dns.efi_loader and efi_ack["siaddr"] == host

    out = tmp_path / "loader"
    cli.run("busybox", "tftp", "-g", "-r", bios_ack["file"], "-l", str(out), host)
    assert out.read_bytes() == (IPXE_DIR / "undionly.kpxe").read_bytes()
    dns.close()


# --- lease events ----------------------------------------------------------------------------


class Events:
    """Consumes Dnsmasq.lease_events() in its own task, as the daemon would."""

    def __init__(self, dns: Dnsmasq) -> None:
        self.queue: asyncio.Queue[LeaseEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._consume(dns))

    async def _consume(self, dns: Dnsmasq) -> None:
        async for event in dns.lease_events():
            await self.queue.put(event)

    async def next(self, *actions: str) -> LeaseEvent:
        event = await asyncio.wait_for(self.queue.get(), 10)
        assert event.action in actions, event
        return event

    async def end(self) -> None:
        """The consumer's loop ends (after Dnsmasq.close()) with nothing left over."""
        await asyncio.wait_for(self.task, 5)
        assert self.queue.empty(), self.queue.get_nowait()


async def kill(*clients: asyncio.subprocess.Process) -> None:
    """End the DHCP clients a test started that still run."""
    for client in clients:
        if client.returncode is None:
            client.kill()
            await client.wait()


def test_lease_events_report_a_new_lease_its_renewal_a_restart_and_the_release(
        lan: Lan, runtime: Path, udhcpc_script: Path):
    srv, cli = lan.add("srv"), lan.add("cli")
    srv.add_address(1)
    mac = mac_of(cli)
    # dnsmasq drops to nobody; its lease script still runs as root and reaches the socket.
    dns = Dnsmasq(make_config(lan, user="nobody"), runtime)
    servers = [start(srv, dns)]
    assert servers[0].user == "nobody"

    async def scenario() -> None:
        events = Events(dns)
        client = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", cli.name, "busybox", "udhcpc", "-i", "eth0", "-f", "-R",
            "-T", "1", "-s", str(udhcpc_script), "-x", "hostname:labpc7",
            "-V", "PXEClient:Arch:00000:UNDI:002001",  # as a PXE ROM says it
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            added = await events.next("add")
            assert added.mac == mac and added.hostname == "labpc7"
            assert in_range(added.ip, lan.address(100), lan.address(150))
            assert "eth0" in added.tags and "ipxe" not in added.tags
            assert added.from_request and added.asker == Asker.FIRMWARE

            # dnsmasq counts expiry in seconds: a renewal within the same second is no
            # change, and no event.
            await asyncio.sleep(1.1)
            client.send_signal(signal.SIGUSR1)  # udhcpc: renew now
            renewed = await events.next("old")
            assert (renewed.mac, renewed.ip) == (mac, added.ip)
            # dnsmasq keeps no request data with the lease.
            assert renewed.asker == Asker.UNKNOWN

            # A restarted dnsmasq (prepare() again, as the supervisor would) replays
            # the leases it knows; the socket and the lease file survived.
            await asyncio.to_thread(servers[-1].stop)
            servers.append(await asyncio.to_thread(start, srv, dns))
            replayed = await events.next("old")
            assert (replayed.mac, replayed.ip, replayed.hostname) == (mac, added.ip, "labpc7")

            client.send_signal(signal.SIGTERM)  # -R: release the lease on the way out
            # dnsmasq 2.90 may report the replayed lease twice: "old" is a state, not
            # a change, and consumers treat it so.
            while (released := await asyncio.wait_for(events.queue.get(), 10)).action == "old":
                assert (released.mac, released.ip) == (mac, added.ip)
            assert (released.action, released.mac, released.ip) == ("del", mac, added.ip)
            await asyncio.wait_for(client.wait(), 10)
        finally:
            await kill(client)
        dns.close()
        await events.end()

    try:
        asyncio.run(scenario())
    except BaseException:
        print("\n".join(server.log for server in servers))
        raise


def test_lease_events_say_whether_phase1_or_the_machines_own_os_asked(
        lan: Lan, runtime: Path, udhcpc_script: Path):
    srv, cli = lan.add("srv"), lan.add("cli")
    srv.add_address(1)
    mac = mac_of(cli)
    dns = Dnsmasq(make_config(lan), runtime)
    server = start(srv, dns)

    async def udhcpc(*options: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", cli.name, "busybox", "udhcpc", "-i", "eth0", "-f",
            "-T", "1", "-s", str(udhcpc_script), *options,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def bound(client: asyncio.subprocess.Process) -> None:
        # dnsmasq reports the lease as it sends its ACK; udhcpc has it only once its
        # script ran, and a release asked for before then is no release.
        assert client.stdout is not None
        async with asyncio.timeout(10):
            while line := await client.stdout.readline():
                if line.startswith(b"udhcpc-event bound "):
                    return
        raise AssertionError("udhcpc ended without a lease")

    async def stop(client: asyncio.subprocess.Process) -> None:
        if client.returncode is None:
            client.terminate()  # without -R: no release
            await asyncio.wait_for(client.wait(), 10)

    async def scenario() -> None:
        events = Events(dns)
        clients = [await udhcpc("-V", PHASE1_VENDOR_CLASS)]  # as phase-1's agent asks
        try:
            phase1 = await events.next("add")
            assert (phase1.mac, phase1.asker) == (mac, Asker.PHASE1)

            # The OS's own DHCP client (no option 60, as systemd-networkd) asking for the
            # address phase-1 still holds: a fresh request, so dnsmasq passes its data
            # with the "old" event (only renewals and its replay at start lack it).
            await stop(clients[0])
            await asyncio.sleep(1.1)  # a change within the same second is no event
            clients.append(await udhcpc("-V", ""))
            kept = await events.next("old")
            assert (kept.mac, kept.ip, kept.asker) == (mac, phase1.ip, Asker.SYSTEM)
            await stop(clients[1])

            # phase-1 gives its address back as it hands over to a kexec'd kernel (the
            # agent's SIGUSR2: release)...
            await asyncio.sleep(1.1)
            clients.append(await udhcpc("-V", PHASE1_VENDOR_CLASS))
            again = await events.next("old")
            assert (again.mac, again.asker) == (mac, Asker.PHASE1)
            await bound(clients[2])
            clients[2].send_signal(signal.SIGUSR2)
            released = await events.next("del")
            assert (released.mac, released.ip) == (mac, phase1.ip)
            await stop(clients[2])

            # ...so the OS's request is a new lease, whatever client-id it sends (networkd's
            # is a DUID, not phase-1's MAC: without the release it holds a second address).
            clients.append(await udhcpc("-V", "", "-x", "hostname:labpc7"))
            system = await events.next("add")
            assert (system.mac, system.hostname, system.asker) == (mac, "labpc7", Asker.SYSTEM)
            assert system.vendor_class is None
        finally:
            await kill(*clients)
        dns.close()
        await events.end()

    try:
        asyncio.run(scenario())
    except BaseException:
        print(server.log)
        raise
    finally:
        server.stop()


def test_prepare_again_keeps_the_lease_file_and_rebinds_a_removed_socket(lan: Lan,
                                                                        runtime: Path):
    dns = Dnsmasq(make_config(lan), runtime)
    dns.prepare()
    dns.lease_file.write_text("kept\n")
    (dns.tftp_root / "stale.efi").write_bytes(b"left by another configuration")
    ip = lan.address(120)

    def hook(*args: str) -> subprocess.CompletedProcess:
        # As dnsmasq calls it: clean argv, DNSMASQ_* in the environment.
        env = {"PATH": os.environ["PATH"], "DNSMASQ_TAGS": "efi64 eth0",
               "DNSMASQ_VENDOR_CLASS": "udhcp 1.35.0"}
        if args[0] != "add":
            env["DNSMASQ_DATA_MISSING"] = "1"
        return subprocess.run([str(dns.hook_path), *args], env=env, capture_output=True,
                              text=True, timeout=10)

    async def send(*args: str) -> int:
        return (await asyncio.to_thread(hook, *args)).returncode

    async def scenario() -> None:
        events = Events(dns)
        assert await send("tftp", "74213", ip, "/x/undionly.kpxe") == 0  # not a lease: no event
        assert await send("add", "AA:BB:CC:00:11:22", ip, "pc1") == 0
        event = await events.next("add")
        assert event == LeaseEvent("add", "aa:bb:cc:00:11:22", ip, "pc1",
                                   frozenset({"efi64", "eth0"}), "udhcp 1.35.0", True)
        assert event.asker == Asker.SYSTEM  # e.g. an installed OS: not a new boot

        dns.socket_path.unlink()  # e.g. someone cleaned the runtime folder
        await asyncio.to_thread(dns.prepare)
        assert await send("old", "aa:bb:cc:00:11:22", ip) == 0
        event = await events.next("old")
        assert (event.hostname, event.from_request, event.asker) == (None, False, Asker.UNKNOWN)

        # Sent before close(): still delivered, then the iteration ends.
        assert await send("del", "aa:bb:cc:00:11:22", ip) == 0
        dns.close()
        await events.next("del")
        await events.end()
        failed = await asyncio.to_thread(hook, "del", "aa:bb:cc:00:11:22", ip)
        assert failed.returncode == 1 and "not delivered" in failed.stderr

    asyncio.run(scenario())
    assert dns.lease_file.read_text() == "kept\n"
    assert sorted(p.name for p in dns.tftp_root.iterdir()) == [
        "grub", "grubx64.efi", "shimx64.efi", "undionly.kpxe"]


def test_prepare_refuses_a_user_that_does_not_exist(lan: Lan, runtime: Path):
    dns = Dnsmasq(make_config(lan, user="no-such-user-bt"), runtime)
    with pytest.raises(InvalidArgument, match=r"children\.user 'no-such-user-bt' .*does not exist"):
        dns.prepare()


def test_without_dhcp_dnsmasq_serves_only_tftp_and_lease_events_just_end(lan: Lan,
                                                                         runtime: Path):
    cfg = make_config(lan)
    cfg = dataclasses.replace(cfg, dnsmasq=dataclasses.replace(cfg.dnsmasq, enable_dhcp=False))
    dns = Dnsmasq(cfg, runtime)
    spec = dns.prepare()
    lines = dns.render_config().splitlines()
    assert "enable-tftp" in lines
    assert not any(line.startswith(("dhcp-", "pxe-service")) for line in lines)
    result = subprocess.run([*spec.argv, "--test"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr

    async def scenario() -> None:
        events = Events(dns)
        await asyncio.sleep(0.1)
        dns.close()
        await events.end()

    asyncio.run(scenario())
