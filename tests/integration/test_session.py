"""A boot session of the real daemon in a server namespace, with clients on the same LAN."""

import hashlib
import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from boottorrentd.config.sections import SeederSection
from boottorrentd.session.seeding import CHILD
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.lan import Lan, Netns
from tests.conftest import Daemon, alive, world_readable_tmpdir
from tests.lanclients import dhcp, write_udhcpc_script

pytestmark = pytest.mark.integration

HTTP_PORT = 8080
# The daemon's own tracker (tracker.kind auto), the child "tracker".
TRACKER = "tracker"
# The default seed engine's child.
SEED = CHILD[SeederSection().engine]


@dataclass
class BootLan:
    lan: Lan
    srv: Netns
    daemon: Daemon
    src: Path

    @property
    def server(self) -> str:
        return f"{self.lan.address(1)}:{HTTP_PORT}"

    def status(self) -> dict:
        return json.loads(self.daemon.ctl("status", "--json").stdout)

    def children(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.status()["children"]}

    def client(self, index: int) -> Netns:
        ns = self.lan.add(f"c{index}")
        ns.add_address(20 + index)
        return ns


def config_text(lan: Lan, interface: str = "eth0") -> str:
    return f"""boottorrent:
  version: 0
  host_ip: {lan.address(1)}
  timeout: 5
  seed_time: 0
dnsmasq:
  interface: {interface}
  user: nobody
  dhcp_range: "{lan.address(100)},{lan.address(150)},1h"
tracker:
  announce_interval: 5
http:
  port: {HTTP_PORT}
dhcp:
  probe_seconds: 1  # the LAN has no other DHCP server; tests/integration/test_dhcp_probe.py
"""


def payload_os(folder: Path, size: int = 4 << 20, seed: bytes = b"os") -> Path:
    folder.mkdir(parents=True)
    block = hashlib.sha256(seed).digest()
    with open(folder / "root.img", "wb") as f:
        for i in range(size // 32):
            f.write(hashlib.sha256(block + i.to_bytes(4, "big")).digest())
    (folder / "config.yaml").write_text(f"dispname: OS {seed.decode()}\nmethod: live\n"
                                        "squashfs: root.img\n")
    return folder


@pytest.fixture
def boot_lan(lan: Lan, daemon_dirs: Daemon) -> BootLan:
    srv = lan.add("srv")
    daemon_dirs.config.write_text(config_text(lan))
    daemon_dirs.prefix = ["ip", "netns", "exec", srv.name]
    daemon_dirs.start()
    src = payload_os(world_readable_tmpdir("bt-os-") / "lab")
    daemon_dirs.ctl("add-os", "lab", str(src))
    return BootLan(lan, srv, daemon_dirs, src)


def fetch_os(ns: Netns, server: str, name: str, dest: Path) -> Path:
    """What a client does: the torrent over HTTP, the OS over BitTorrent."""
    dest.mkdir(parents=True, exist_ok=True)
    torrent = dest / f"{name}.torrent"
    ns.run("curl", "-sSf", "-o", str(torrent), f"http://{server}/torrents/{name}.torrent")
    ns.run("aria2c", f"--dir={dest}", "--seed-time=0", "--enable-dht=false",
           "--bt-enable-lpd=false", "--bt-tracker-interval=2", "--summary-interval=0",
           "--console-log-level=warn", "--bt-stop-timeout=60", str(torrent), timeout=120)
    return dest / name


def same_files(a: Path, b: Path) -> bool:
    return all((b / f.relative_to(a)).read_bytes() == f.read_bytes()
               for f in a.rglob("*") if f.is_file() and f.name != "config.yaml")


def test_start_claims_the_address_runs_every_child_and_stop_undoes_it(boot_lan: BootLan):
    before = boot_lan.srv.addresses()
    started = boot_lan.daemon.ctl("start")
    assert "running" in started.stdout
    status = boot_lan.status()
    assert status["state"] == "running"
    assert status["interface"] == "eth0"
    assert status["host_ip"] == boot_lan.lan.address(1)
    assert status["http_port"] == HTTP_PORT
    children = {c["name"]: c for c in status["children"]}
    assert set(children) == {TRACKER, SEED, "dnsmasq"}
    assert all(alive(c["pid"]) and c["restarts"] == 0 for c in children.values())
    assert f"{boot_lan.lan.address(1)}/24" in boot_lan.srv.addresses()
    text = boot_lan.daemon.ctl("status").stdout
    assert all(name in text for name in ("dnsmasq", SEED, TRACKER))

    boot_lan.daemon.ctl("stop")
    assert boot_lan.status()["state"] == "stopped"
    assert not any(alive(c["pid"]) for c in children.values())
    assert boot_lan.srv.addresses() == before
    assert not (boot_lan.daemon.runtime_dir / "session").exists()


def test_a_dhcp_client_gets_an_address_and_the_ipxe_loader_over_tftp(boot_lan: BootLan,
                                                                   tmp_path):
    boot_lan.daemon.ctl("start")
    client = boot_lan.lan.add("pxe")
    lease = dhcp(client, write_udhcpc_script(tmp_path))
    last = int(lease["ip"].rsplit(".", 1)[1])
    assert 100 <= last <= 150
    assert lease["boot_file"] == "undionly.kpxe"
    client.run("busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", str(tmp_path / "got"),
               boot_lan.lan.address(1))
    assert (tmp_path / "got").read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    mac = client.run("cat", "/sys/class/net/eth0/address").stdout.strip()

    def leased():
        clients = {c["mac"]: c for c in json.loads(boot_lan.daemon.ctl("clients",
                                                                        "--json").stdout)}
        return clients.get(mac, {}).get("ip") == lease["ip"] and clients[mac]
    entry = wait_until(leased, timeout=10, what="the lease to reach the client registry")
    assert entry["stage"] == "dhcp"


def test_ipxe_gets_the_menu_and_after_assign_that_os_directly(boot_lan: BootLan):
    boot_lan.daemon.ctl("start")
    client = boot_lan.client(1)
    mac = "52:54:00:aa:bb:01"
    not_built = client.run("curl", "-sSf", f"http://{boot_lan.server}/boot/{mac}.ipxe").stdout
    assert "boottorrentctl build-client" in not_built
    phase1 = boot_lan.daemon.state_dir / "phase1"
    phase1.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (phase1 / name).write_bytes(b"phase-1 " + name.encode())
    chain = client.run("curl", "-sSf", f"http://{boot_lan.server}/boot.ipxe").stdout
    assert chain.startswith("#!ipxe") and "${net0/mac}" in chain
    menu = client.run("curl", "-sSf", f"http://{boot_lan.server}/boot/{mac}.ipxe").stdout
    assert "menu" in menu and "item lab" in menu and "--timeout 5000" in menu

    boot_lan.daemon.ctl("assign", mac, "lab")
    direct = client.run("curl", "-sSf", f"http://{boot_lan.server}/boot/{mac}.ipxe").stdout
    assert "menu" not in direct.split("\n", 2)[1:2] and "choose" not in direct
    assert "boottorrent.os=lab" in direct
    boot_lan.daemon.ctl("unassign", mac)
    again = client.run("curl", "-sSf", f"http://{boot_lan.server}/boot/{mac}.ipxe").stdout
    assert "choose" in again
    unknown = boot_lan.daemon.ctl("assign", mac, "ghost", check=False)
    assert unknown.returncode == 1 and "no OS named 'ghost'" in unknown.stderr
    bad = boot_lan.daemon.ctl("assign", "not-a-mac", "lab", check=False)
    assert bad.returncode == 1 and "MAC" in bad.stderr


def test_the_grub_config_uefi_machines_fetch_over_tftp_follows_assignments(boot_lan: BootLan):
    boot_lan.daemon.ctl("start")
    client = boot_lan.client(1)
    host = boot_lan.server.split(":")[0]
    mac = "52:54:00:aa:bb:02"

    def grub_cfg() -> str:
        return client.run("curl", "-sSf", f"tftp://{host}/grub/grub.cfg").stdout

    # Nothing assigned: one plan for every machine, the menu (phase-1 is not built here).
    first = grub_cfg()
    assert "net_default_mac" not in first.split("\n", 1)[1]
    assert "boottorrentctl build-client" in first
    for name in ("shimx64.efi", "grubx64.efi"):
        loader = client.run("curl", "-sSf", "-o", "/dev/null", "-w", "%{size_download}",
                            f"tftp://{host}/{name}").stdout
        assert int(loader) > 100_000, name

    boot_lan.daemon.ctl("assign", mac, "lab")
    wait_until(lambda: mac in grub_cfg(), timeout=10,
               what="the GRUB config to name the assigned machine")
    assigned = grub_cfg()
    assert f'if [ "${{net_default_mac}}" = {mac} ]; then' in assigned
    boot_lan.daemon.ctl("unassign", mac)
    wait_until(lambda: mac not in grub_cfg(), timeout=10,
               what="the GRUB config to forget the machine")


def test_two_aria2c_clients_download_an_os_from_the_seed_via_the_tracker(boot_lan: BootLan,
                                                                        tmp_path):
    boot_lan.daemon.ctl("start")
    clients = [boot_lan.client(i) for i in (1, 2)]
    # Both at once, as machines booting together do.
    with ThreadPoolExecutor(2) as pool:
        fetched = list(pool.map(lambda i: fetch_os(clients[i], boot_lan.server, "lab",
                                                   tmp_path / f"c{i}"), range(2)))
    for got in fetched:
        assert same_files(boot_lan.src, got)
    seeding = wait_until(lambda: [s for s in boot_lan.status()["seeding"]
                                  if s["name"] == "lab" and s["uploaded_bytes"] > 0],
                         timeout=20, what="the seed's upload to show in status")
    assert seeding[0]["status"] == "seeding"


def test_an_os_added_during_a_session_is_seeded_without_a_restart(boot_lan: BootLan, tmp_path):
    boot_lan.daemon.ctl("start")
    pid = boot_lan.children()[SEED]["pid"]
    second = payload_os(world_readable_tmpdir("bt-os-") / "second", 1 << 20, b"second")
    boot_lan.daemon.ctl("add-os", "second", str(second))
    got = fetch_os(boot_lan.client(1), boot_lan.server, "second", tmp_path / "c")
    assert same_files(second, got)
    assert boot_lan.children()[SEED]["pid"] == pid
    boot_lan.daemon.ctl("remove-os", "second")
    assert (boot_lan.src / "root.img").exists()


@pytest.mark.parametrize("child", ["dnsmasq", SEED, TRACKER])
def test_a_killed_child_is_restarted_and_dhcp_and_downloads_work_again(boot_lan: BootLan,
                                                                       tmp_path, child):
    boot_lan.daemon.ctl("start")
    old = boot_lan.children()[child]["pid"]
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: (c := boot_lan.children()[child])["pid"] not in (0, old)
                     and c["state"] == "running" and c, timeout=30,
                     what=f"{child} to come back")
    assert new["restarts"] == 1
    wait_until(lambda: boot_lan.status()["state"] == "running", timeout=30,
               what="state running again")
    got = fetch_os(boot_lan.client(1), boot_lan.server, "lab", tmp_path / "c")
    assert same_files(boot_lan.src, got)
    lease = dhcp(boot_lan.lan.add("pxe"), write_udhcpc_script(tmp_path))
    assert lease["boot_file"] == "undionly.kpxe"


def test_ten_start_stop_cycles_leave_nothing_behind(boot_lan: BootLan):
    before = boot_lan.srv.addresses()
    baseline = set(subprocess.run(["ip", "netns", "pids", boot_lan.srv.name],
                                  capture_output=True, text=True).stdout.split())
    for _ in range(10):
        boot_lan.daemon.ctl("start")
        assert boot_lan.status()["state"] == "running"
        boot_lan.daemon.ctl("stop")
    pids = set(subprocess.run(["ip", "netns", "pids", boot_lan.srv.name], capture_output=True,
                              text=True).stdout.split())
    assert pids == baseline, "only the daemon itself may run in the server namespace"
    assert boot_lan.srv.addresses() == before
    runtime = boot_lan.daemon.runtime_dir
    assert sorted(p.name for p in runtime.iterdir()) == []
    sockets = boot_lan.srv.run("ss", "-Hltnup").stdout
    assert str(HTTP_PORT) not in sockets and ":67 " not in sockets


def test_progress_reports_reach_the_client_object_and_bad_ones_change_nothing(
        boot_lan: BootLan):
    boot_lan.daemon.ctl("start")
    client = boot_lan.client(1)
    mac = "52:54:00:aa:bb:02"
    url = f"http://{boot_lan.server}/api/v1/clients/{mac}/events"

    def post(body: str, ctype: str = "application/json") -> int:
        out = client.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                         f"Content-Type: {ctype}", "--data-binary", body, url).stdout
        return int(out)

    report = {"stage": "downloading", "progress": 0.5, "downloaded_bytes": 2097152,
              "uploaded_bytes": 1024, "down_rate": 1000, "up_rate": 10, "peers": 2, "os": "lab"}
    assert post(json.dumps(report)) == 200
    path = f"/org/boottorrent1/client/{mac.replace(':', '')}"
    stage = boot_lan.daemon.busctl("get-property", "org.boottorrent1", path,
                                   "org.boottorrent1.Client", "Stage").stdout
    assert stage.strip() == 's "downloading"'
    listed = {c["mac"]: c for c in json.loads(boot_lan.daemon.ctl("clients", "--json").stdout)}
    assert listed[mac]["progress"] == 0.5
    assert listed[mac]["downloaded_bytes"] == 2097152

    for body, ctype in (("{not json", "application/json"),
                        (json.dumps({"stage": "flying"}), "application/json"),
                        (json.dumps({"progress": 7}), "application/json"),
                        (json.dumps(report), "text/plain"),
                        (json.dumps({"stage": "failed"}), "application/json"),
                        ("[" + "1," * 20000 + "1]", "application/json")):
        assert 400 <= post(body, ctype) < 500
    after = {c["mac"]: c for c in json.loads(boot_lan.daemon.ctl("clients", "--json").stdout)}
    assert {k: v for k, v in after[mac].items() if k != "last_seen"} == \
        {k: v for k, v in listed[mac].items() if k != "last_seen"}
    assert "1 downloading" in boot_lan.daemon.ctl("status").stdout


def test_a_restarted_daemon_brings_the_session_back(boot_lan: BootLan):
    boot_lan.daemon.ctl("start")
    code, _ = boot_lan.daemon.stop()
    assert code == 0
    assert f"{boot_lan.lan.address(1)}/24" not in boot_lan.srv.addresses()
    boot_lan.daemon.start()
    wait_until(lambda: boot_lan.status()["state"] == "running", timeout=60,
               what="the session to come back")
    assert set(boot_lan.children()) == {TRACKER, SEED, "dnsmasq"}


def test_a_daemon_killed_mid_session_leaves_nothing_that_blocks_the_next_one(boot_lan: BootLan):
    boot_lan.daemon.ctl("start")
    old = {n: c["pid"] for n, c in boot_lan.children().items()}
    boot_lan.daemon.kill()
    boot_lan.daemon.start()
    status = wait_until(lambda: (s := boot_lan.status())["state"] == "running" and s,
                        timeout=60, what="the session to come back after a crash")
    assert not any(alive(pid) for pid in old.values())
    assert boot_lan.srv.addresses().count(f"{boot_lan.lan.address(1)}/24") == 1
    assert len(status["children"]) == 3


def test_a_missing_interface_fails_the_start_before_any_child_and_says_so(boot_lan: BootLan):
    boot_lan.daemon.stop()
    boot_lan.daemon.config.write_text(config_text(boot_lan.lan, interface="nope0"))
    boot_lan.daemon.start()
    result = boot_lan.daemon.ctl("start", check=False)
    assert result.returncode == 1
    assert "interface 'nope0' does not exist" in result.stderr
    status = boot_lan.status()
    assert status["state"] == "failed"
    assert "nope0" in status["reason"]
    assert status["children"] == []
    boot_lan.daemon.ctl("stop")
    assert boot_lan.status()["state"] == "stopped"


# --- reload --------------------------------------------------------------------------------


def _menu(boot_lan: BootLan, client: Netns, mac: str = "52:54:00:aa:bb:02") -> str:
    return client.run("curl", "-sSf", f"http://{boot_lan.server}/boot/{mac}.ipxe").stdout


def _with_phase1(boot_lan: BootLan) -> None:
    # The menu is only rendered once there is a phase-1 image to boot into.
    phase1 = boot_lan.daemon.state_dir / "phase1"
    phase1.mkdir(exist_ok=True)
    for name in ("vmlinuz", "initrd.img"):
        (phase1 / name).write_bytes(b"phase-1 " + name.encode())


def _edit(boot_lan: BootLan, old: str, new: str) -> None:
    text = boot_lan.daemon.config.read_text()
    assert old in text
    boot_lan.daemon.config.write_text(text.replace(old, new))


def _pids(boot_lan: BootLan) -> dict[str, int]:
    return {name: c["pid"] for name, c in boot_lan.children().items()}


def test_reload_gives_the_next_boot_the_new_menu_and_timeout_while_the_session_runs(
        boot_lan: BootLan):
    boot_lan.daemon.ctl("add-os", "spare", str(payload_os(boot_lan.src.parent / "spare",
                                                           1 << 20, b"spare")))
    _with_phase1(boot_lan)
    boot_lan.daemon.ctl("start")
    client = boot_lan.client(1)
    before = _menu(boot_lan, client)
    assert "item lab" in before and "item spare" in before and "--timeout 5000" in before
    pids = _pids(boot_lan)

    _edit(boot_lan, "  timeout: 5\n", "  timeout: 9\n  display_oss: [spare]\n"
          "  default_os: spare\n")
    reloaded = boot_lan.daemon.ctl("reload")

    assert "boottorrent.display_oss" in reloaded.stdout
    menu = _menu(boot_lan, client)
    assert "item spare" in menu and "item lab" not in menu and "--timeout 9000" in menu
    status = boot_lan.status()
    assert (status["state"], status["reason"]) == ("running", "")
    assert _pids(boot_lan) == pids, "a child was restarted"

    # The same through SIGHUP, as `systemctl reload` sends it (and a shell can).
    _edit(boot_lan, "  timeout: 9\n", "  timeout: 3\n")
    assert boot_lan.daemon.process is not None
    boot_lan.daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "--timeout 3000" in _menu(boot_lan, client), timeout=10,
               what="the menu with the timeout of the reloaded file")
    assert _pids(boot_lan) == pids


def test_an_interface_edit_waits_for_a_restart_of_the_session_and_says_so(boot_lan: BootLan):
    # A second boot network for the server: a veth pair whose far end goes nowhere.
    boot_lan.srv.run("ip", "link", "add", "bt1", "type", "veth", "peer", "name", "bt1p")
    boot_lan.srv.run("ip", "link", "set", "bt1p", "up")
    boot_lan.daemon.ctl("start")
    pids = _pids(boot_lan)
    address = f"{boot_lan.lan.address(1)}/24"

    _edit(boot_lan, "  interface: eth0\n", "  interface: bt1\n")
    boot_lan.daemon.ctl("reload")

    status = boot_lan.status()
    assert status["state"] == "running"
    assert status["reason"] == "restart the session to apply: dnsmasq.interface"
    assert "restart the session to apply: dnsmasq.interface" in boot_lan.daemon.ctl(
        "status").stdout
    # What the session uses, not what the file says, until it restarts.
    assert status["interface"] == "eth0" and address in boot_lan.srv.addresses()
    assert _pids(boot_lan) == pids

    boot_lan.daemon.ctl("stop")
    boot_lan.daemon.ctl("start")

    status = boot_lan.status()
    assert (status["state"], status["reason"], status["interface"]) == ("running", "", "bt1")
    shown = boot_lan.srv.run("ip", "-4", "-o", "addr", "show", "dev", "bt1").stdout
    assert address in shown and address not in boot_lan.srv.addresses()


def test_an_invalid_edit_is_refused_with_the_key_and_the_session_runs_on(boot_lan: BootLan):
    _with_phase1(boot_lan)
    boot_lan.daemon.ctl("start")
    client = boot_lan.client(1)
    pids = _pids(boot_lan)

    _edit(boot_lan, "  timeout: 5\n", "  timeout: soon\n")
    refused = boot_lan.daemon.ctl("reload", check=False)

    assert refused.returncode == 1
    assert "boottorrent.timeout: expected a whole number" in refused.stderr
    assert boot_lan.status()["state"] == "running" and _pids(boot_lan) == pids
    assert "--timeout 5000" in _menu(boot_lan, client)

    # SIGHUP with the same file: the daemon logs the refusal and goes on.
    assert boot_lan.daemon.process is not None
    boot_lan.daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in boot_lan.daemon.log(), timeout=10,
               what="the daemon to log the refused reload")
    assert boot_lan.daemon.process.poll() is None
    assert "boottorrent.timeout" in boot_lan.daemon.log().split("reload refused", 1)[1]
    assert boot_lan.status()["state"] == "running" and _pids(boot_lan) == pids
