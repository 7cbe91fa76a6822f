"""boottorrentd on a private system bus, driven by boottorrentctl and busctl."""

import json
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from boottorrentd.bus.service import (
    CLIENT_PROPERTIES,
    MANAGER_PROPERTIES,
    OS_PROPERTIES,
    BusProperty,
)
from boottorrentd.library.torrent import read_torrent
from boottorrentd.util.wait import wait_until
from tests.conftest import BIN, Daemon, make_os, world_readable_tmpdir
from tests.integration import test_session

pytestmark = pytest.mark.integration

# Client objects exist only in a running session: test_session's fixture makes one.
boot_lan = test_session.boot_lan

MANAGER = ("org.boottorrent1", "/org/boottorrent1", "org.boottorrent1.Manager")


def transmission_show(torrent: str) -> str:
    return subprocess.run(["transmission-show", torrent], capture_output=True, text=True,
                          check=True).stdout


def library_files(d: Daemon) -> list[str]:
    return sorted(str(p.relative_to(d.state_dir)) for p in d.state_dir.rglob("*"))


def test_daemon_owns_the_name_and_busctl_introspects_manager_and_object_manager(daemon):
    out = daemon.busctl("introspect", "org.boottorrent1", "/org/boottorrent1").stdout
    assert "org.boottorrent1.Manager" in out
    assert "org.freedesktop.DBus.ObjectManager" in out
    for member in (".AddOS", ".RemoveOS", ".ImportProject", ".State", ".Version"):
        assert member in out
    state = daemon.busctl("get-property", *MANAGER, "State").stdout
    assert state.strip() == 's "stopped"'


def test_daemon_sends_ready_and_status_and_exits_cleanly_on_sigterm(daemon):
    assert any("READY=1" in n and "STATUS=" in n for n in daemon.notifications)
    code, err = daemon.stop()
    assert code == 0, err
    assert "shutting down" in err


def test_add_list_show_remove_through_the_cli(daemon, tmp_path):
    src = make_os(tmp_path / "src")
    added = daemon.ctl("add-os", "testos", str(src))
    assert "Added testos" in added.stdout

    listed = json.loads(daemon.ctl("list-os", "--json").stdout)
    assert [o["name"] for o in listed] == ["testos"]
    os_ = listed[0]
    assert os_["display_name"] == "Test OS"
    assert os_["method"] == "kexec"
    assert os_["size_bytes"] == 6000 + 18000
    assert len(os_["infohash"]) == 40
    assert os_["torrent"] == str(daemon.state_dir / "torrents/testos.torrent")
    assert os_["fields"]["kernel"] == "vmlinuz"

    shown = json.loads(daemon.ctl("show-os", "testos", "--json").stdout)
    assert shown == os_
    text = daemon.ctl("list-os").stdout
    assert "testos" in text and "Test OS" in text

    # The library copy is the daemon's: the source may go away.
    assert (daemon.state_dir / "oss/testos/vmlinuz").read_bytes() == (src / "vmlinuz").read_bytes()
    daemon.ctl("remove-os", "testos")
    assert json.loads(daemon.ctl("list-os", "--json").stdout) == []
    assert library_files(daemon) == ["oss", "torrents"]


def test_busctl_sees_one_object_per_os_with_its_properties(daemon, tmp_path):
    daemon.ctl("add-os", "deb.12_x", str(make_os(tmp_path / "src")))
    tree = daemon.busctl("tree", "org.boottorrent1").stdout
    assert "/org/boottorrent1/os/deb_2e12_5fx" in tree
    path = "/org/boottorrent1/os/deb_2e12_5fx"
    name = daemon.busctl("get-property", "org.boottorrent1", path, "org.boottorrent1.OS", "Name")
    assert name.stdout.strip() == 's "deb.12_x"'
    kernel = daemon.busctl("get-property", "org.boottorrent1", path, "org.boottorrent1.OS",
                           "Kernel")
    assert kernel.stdout.strip() == 's "vmlinuz"'


def introspected_properties(d: Daemon, path: str, interface: str) -> dict[str, tuple[str, str]]:
    """(type, access) of each property busctl sees on `interface` at `path`."""
    xml = d.busctl("introspect", "--xml-interface", "org.boottorrent1", path).stdout
    node = ET.fromstring(xml).find(f"interface[@name='{interface}']")
    assert node is not None, f"{path} has no {interface}"
    return {p.get("name"): (p.get("type"), p.get("access")) for p in node.iter("property")}


def declared(table: tuple[BusProperty, ...]) -> dict[str, tuple[str, str]]:
    return {p.name: (p.signature, "read") for p in table}


def test_manager_and_os_properties_on_the_bus_are_exactly_their_declared_tables(daemon,
                                                                                tmp_path):
    daemon.ctl("add-os", "testos", str(make_os(tmp_path / "src")))
    assert introspected_properties(daemon, "/org/boottorrent1", "org.boottorrent1.Manager") \
        == declared(MANAGER_PROPERTIES)
    assert introspected_properties(daemon, "/org/boottorrent1/os/testos",
                                   "org.boottorrent1.OS") == declared(OS_PROPERTIES)


def test_client_properties_on_the_bus_are_exactly_their_declared_table(
        boot_lan: test_session.BootLan):
    boot_lan.daemon.ctl("start")
    url = f"http://{boot_lan.server}/api/v1/clients/52:54:00:aa:bb:03/events"
    boot_lan.client(1).run("curl", "-sSf", "-o", "/dev/null", "-H",
                           "Content-Type: application/json", "--data-binary",
                           json.dumps({"stage": "downloading", "os": "lab"}), url)
    assert introspected_properties(boot_lan.daemon, "/org/boottorrent1/client/525400aabb03",
                                   "org.boottorrent1.Client") == declared(CLIENT_PROPERTIES)


def test_a_client_change_waiting_for_its_signal_goes_out_when_the_daemon_stops(
        boot_lan: test_session.BootLan):
    # Client signals wait for a tick (boottorrentd/bus/coalesce.py); a daemon that stops
    # before it comes sends them on its way out, or a listener never sees the last state.
    d = boot_lan.daemon
    d.ctl("start")
    mac = "52:54:00:aa:bb:04"
    boot_lan.client(1).run("curl", "-sSf", "-o", "/dev/null", "-H",
                           "Content-Type: application/json", "--data-binary",
                           json.dumps({"stage": "downloading", "os": "lab"}),
                           f"http://{boot_lan.server}/api/v1/clients/{mac}/events")
    d.ctl("stop")
    monitor = d.monitor("OSProgress", "type='signal',member='PropertiesChanged',"
                        "path='/org/boottorrent1/client/525400aabb04'")
    try:
        d.ctl("assign", mac, "lab")
        code, log = d.stop()
    finally:
        monitor.send_signal(signal.SIGINT)
        out = monitor.communicate(timeout=10)[0]
    assert code == 0, log
    changed = [json.loads(line)["payload"]["data"][1] for line in out.splitlines()
               if line.strip()]
    assert any(props.get("AssignedOS", {}).get("data") == "lab" for props in changed), out


def test_children_and_seeding_are_lists_of_named_records(daemon):
    for name in ("Children", "Seeding"):
        value = daemon.busctl("get-property", *MANAGER, name).stdout
        assert value.strip() == "aa{sv} 0"  # no session yet: empty


def test_torrent_is_read_by_transmission_show_with_matching_infohash_and_files(daemon, tmp_path):
    src = make_os(tmp_path / "src")
    (src / "modules").mkdir()
    (src / "modules/a.ko").write_bytes(b"m" * 300_000)
    daemon.ctl("add-os", "testos", str(src))
    record = json.loads(daemon.ctl("show-os", "testos", "--json").stdout)
    shown = transmission_show(record["torrent"])
    assert record["infohash"] in shown.lower()
    for name, size in (("testos/vmlinuz", "6.00 kB"), ("testos/initrd.img", "18.00 kB"),
                       ("testos/modules/a.ko", "300.0 kB")):
        assert name in shown
        assert size in shown
    assert "config.yaml" not in shown


def test_same_folder_on_two_state_dirs_gives_the_same_infohash(daemon_dirs, tmp_path):
    src = make_os(tmp_path / "src", kernel=b"k" * 700_000)
    daemon_dirs.start()
    daemon_dirs.ctl("add-os", "same", str(src))
    first = json.loads(daemon_dirs.ctl("show-os", "same", "--json").stdout)["infohash"]
    daemon_dirs.stop()

    daemon_dirs.state_dir = tmp_path / "other-state"
    (src / "vmlinuz").touch()  # a newer mtime must not matter
    daemon_dirs.start()
    daemon_dirs.ctl("add-os", "same", str(src))
    second = json.loads(daemon_dirs.ctl("show-os", "same", "--json").stdout)["infohash"]
    assert first == second


@pytest.mark.parametrize("name", ["..", "../x", "/etc", "", "a" * 65, "Upper", "-dash", "a b",
                                  "x/y"])
def test_bad_names_are_refused_with_invalid_argument_and_nothing_is_written(daemon, tmp_path,
                                                                             name):
    src = make_os(tmp_path / "src")
    result = daemon.busctl("--", "call", *MANAGER, "AddOS", "ssa{sv}", name, str(src), "0",
                           check=False)
    assert result.returncode != 0
    assert "invalid OS name" in result.stderr
    assert library_files(daemon) == ["oss", "torrents"]
    cli = daemon.ctl("add-os", "--", name, str(src), check=False)
    assert cli.returncode == 1
    assert cli.stderr.startswith("boottorrentctl: invalid OS name")


def test_bad_folders_and_configs_are_refused_with_a_fix_and_nothing_is_written(daemon,
                                                                              tmp_path):
    cases = {
        "missing folder": (tmp_path / "nope", "does not exist"),
        "no config": (make_os(tmp_path / "noconf", config=None), "has no config.yaml"),
        "bad method": (make_os(tmp_path / "badm", config="method: floppy\n"), "method"),
        "missing kernel": (make_os(tmp_path / "nok", config="method: kexec\nkernel: gone\n"
                                   "initrd: initrd.img\n"), "gone"),
        "escape": (make_os(tmp_path / "esc", config="method: kexec\nkernel: ../../etc/passwd\n"
                           "initrd: initrd.img\n"), "kernel"),
    }
    for label, (folder, expected) in cases.items():
        result = daemon.ctl("add-os", "x", str(folder), check=False)
        assert result.returncode == 1, label
        assert expected in result.stderr, (label, result.stderr)
        assert result.stderr.count("\n") == 1, (label, result.stderr)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.yaml").write_text("method: bin\nbin: hello\n")
    assert daemon.ctl("add-os", "x", str(empty), check=False).returncode == 1
    linked = make_os(tmp_path / "withlink")
    (linked / "lnk").symlink_to("/etc/hostname")
    result = daemon.ctl("add-os", "x", str(linked), check=False)
    assert result.returncode == 1 and "symlink" in result.stderr
    assert library_files(daemon) == ["oss", "torrents"]


def test_duplicate_name_and_duplicate_menu_label_are_refused(daemon, tmp_path):
    daemon.ctl("add-os", "one", str(make_os(tmp_path / "a")))
    again = daemon.ctl("add-os", "one", str(make_os(tmp_path / "b")), check=False)
    assert again.returncode == 1 and "already in the library" in again.stderr
    same_label = daemon.ctl("add-os", "two", str(make_os(tmp_path / "c")), check=False)
    assert same_label.returncode == 1 and "dispname" in same_label.stderr
    assert [o["name"] for o in json.loads(daemon.ctl("list-os", "--json").stdout)] == ["one"]


def test_add_os_writes_config_yaml_from_options_when_the_folder_has_none(daemon, tmp_path):
    src = make_os(tmp_path / "src", config=None)
    daemon.ctl("add-os", "cli", str(src), "--method", "kexec", "--kernel", "vmlinuz",
               "--initrd", "initrd.img", "--cmdline", "console=ttyS0", "--dispname", "From CLI")
    shown = json.loads(daemon.ctl("show-os", "cli", "--json").stdout)
    assert shown["display_name"] == "From CLI"
    assert shown["fields"] == {"kernel": "vmlinuz", "initrd": "initrd.img",
                               "cmdline": "console=ttyS0"}
    assert not (src / "config.yaml").exists()
    assert (daemon.state_dir / "oss/cli/config.yaml").exists()


def test_link_uses_the_folder_in_place(daemon, tmp_path):
    src = make_os(tmp_path / "src")
    daemon.ctl("add-os", "linked", str(src), "--link")
    shown = json.loads(daemon.ctl("show-os", "linked", "--json").stdout)
    assert shown["linked"] is True
    assert Path(shown["path"]) == src.resolve()
    daemon.ctl("remove-os", "linked")
    assert (src / "vmlinuz").exists(), "removing a linked OS must not delete the user's files"


def test_unknown_os_and_usage_errors_have_the_documented_exit_codes(daemon):
    missing = daemon.ctl("show-os", "ghost", check=False)
    assert missing.returncode == 1
    assert "no OS named 'ghost'" in missing.stderr
    usage = daemon.ctl("show-os", check=False)
    assert usage.returncode == 2
    assert daemon.ctl("remove-os", "ghost", check=False).returncode == 1


def test_nobody_may_read_but_not_change(daemon, tmp_path):
    src = make_os(world_readable_tmpdir("bt-src-") / "os")
    denied = daemon.busctl("call", *MANAGER, "AddOS", "ssa{sv}", "x", str(src), "0",
                           user="nobody", check=False)
    assert denied.returncode != 0
    assert "Access denied" in denied.stderr
    assert library_files(daemon) == ["oss", "torrents"]
    daemon.ctl("add-os", "x", str(src))
    # dbus-send shows the error's name and message (busctl prints only strerror).
    removed = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dbus-send",
         "--system", "--print-reply", "--dest=org.boottorrent1", "/org/boottorrent1",
         "org.boottorrent1.Manager.RemoveOS", "string:x"],
        env=daemon.bus.env, capture_output=True, text=True, timeout=30)
    assert removed.returncode != 0
    assert "org.freedesktop.DBus.Error.AccessDenied" in removed.stderr
    assert "needs root or the polkit action org.boottorrent1.manage" in removed.stderr
    assert "x" in daemon.ctl("list-os").stdout

    state = daemon.busctl("get-property", *MANAGER, "State", user="nobody")
    assert "stopped" in state.stdout
    intro = daemon.busctl("introspect", "org.boottorrent1", "/org/boottorrent1", user="nobody")
    assert "AddOS" in intro.stdout
    objects = daemon.busctl("call", "org.boottorrent1", "/org/boottorrent1",
                            "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                            user="nobody")
    assert "/org/boottorrent1/os/x" in objects.stdout


def test_library_survives_a_restart(daemon_dirs, tmp_path):
    daemon_dirs.start()
    daemon_dirs.ctl("add-os", "keep", str(make_os(tmp_path / "src")))
    before = json.loads(daemon_dirs.ctl("list-os", "--json").stdout)
    daemon_dirs.stop()
    daemon_dirs.start()
    assert json.loads(daemon_dirs.ctl("list-os", "--json").stdout) == before


def big_os(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "disk.img", "wb") as f:
        f.truncate(size)
    (folder / "config.yaml").write_text("method: image\nimage: disk.img\ntarget: /dev/sda\n")
    return folder


def messages_seen(monitor_output: str) -> list[str]:
    """What a monitor saw, in order: an OSProgress signal as its phase and bytes done
    ("hashing 268435456"), any other message as its type ("method_return")."""
    seen = []
    for line in monitor_output.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("member") == "OSProgress":
            _, phase, done, _ = message["payload"]["data"]
            seen.append(f"{phase} {done}")
        else:
            seen.append(message["type"])
    return seen


def test_daemon_answers_calls_while_a_1gb_os_hashes(daemon, tmp_path):
    src = big_os(tmp_path / "big", 1 << 30)
    # What the daemon sends, in the order it sends it: its progress signals and its replies.
    # A loop blocked by the hash would answer no read until the hash had finished.
    monitor = daemon.monitor("OSProgress", "type='method_return',sender='org.boottorrent1'")
    lines: list[str] = []

    def read_monitor() -> None:
        for line in monitor.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_monitor, daemon=True)
    reader.start()
    try:
        adding = subprocess.Popen([str(BIN / "boottorrentctl"), "add-os", "big", str(src),
                                   "--link"], env=daemon.bus.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        answered_while_busy = 0
        while adding.poll() is None:
            daemon.busctl("get-property", *MANAGER, "Version")
            if adding.poll() is None:
                answered_while_busy += 1
            time.sleep(0.05)
        _, err = adding.communicate()
        assert adding.returncode == 0, err
        finished = f"hashing {1 << 30}"
        wait_until(lambda: finished in messages_seen("".join(lines)), timeout=30,
                   what=lambda: f"the monitor to see {finished!r}: {messages_seen(''.join(lines))}")
    finally:
        monitor.send_signal(signal.SIGINT)
        monitor.wait(10)
        reader.join(10)
    assert answered_while_busy >= 3, "the add finished too fast to prove anything"
    sent = messages_seen("".join(lines))
    hashing = [i for i, what in enumerate(sent) if what.startswith("hashing ")]
    # Reads answered after the hash had begun and before it had finished.
    assert sent[hashing[0]:hashing[-1]].count("method_return") >= 3, sent


def test_progress_signals_are_published_while_hashing(daemon, tmp_path):
    src = big_os(tmp_path / "big", 256 << 20)
    monitor = daemon.monitor("OSProgress")
    try:
        daemon.ctl("add-os", "big", str(src))
    finally:
        time.sleep(0.3)
        monitor.send_signal(signal.SIGINT)
        out = monitor.communicate(timeout=10)[0]
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    bodies = [e["payload"]["data"] for e in events if e.get("member") == "OSProgress"]
    phases = {b[1] for b in bodies}
    assert phases == {"copying", "hashing"}
    hashing = [b for b in bodies if b[1] == "hashing"]
    assert hashing[-1][2] == hashing[-1][3] == 256 << 20
    assert len(hashing) >= 2


def test_a_daemon_killed_mid_add_leaves_no_half_entry(daemon_dirs, tmp_path):
    src = big_os(tmp_path / "big", 2 << 30)
    daemon_dirs.start()
    adding = subprocess.Popen([str(BIN / "boottorrentctl"), "add-os", "big", str(src)],
                              env=daemon_dirs.bus.env, stderr=subprocess.PIPE)
    oss = daemon_dirs.state_dir / "oss"
    wait_until(lambda: any(p.name.startswith(".tmp-") for p in oss.iterdir()), timeout=30,
               what="the add's temporary folder in the library", interval=0.01)
    time.sleep(0.3)
    daemon_dirs.kill()
    adding.wait(30)
    assert adding.returncode == 1

    daemon_dirs.start()
    assert json.loads(daemon_dirs.ctl("list-os", "--json").stdout) == []
    assert library_files(daemon_dirs) == ["oss", "torrents"]
    daemon_dirs.ctl("add-os", "big", str(src), "--link")


def test_invalid_config_stops_the_daemon_with_the_key_and_the_fix(daemon_dirs):
    daemon_dirs.config.write_text("boottorrent:\n  version: 0\n  timeout: soon\n")
    proc = subprocess.run([str(BIN / "boottorrentd"), "--config", str(daemon_dirs.config),
                           "--state-dir", str(daemon_dirs.state_dir), "--runtime-dir",
                           str(daemon_dirs.runtime_dir)],
                          env=daemon_dirs.bus.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "boottorrent.timeout" in proc.stderr


def test_missing_config_file_is_a_clear_error(daemon_dirs):
    daemon_dirs.config.unlink()
    proc = subprocess.run([str(BIN / "boottorrentd"), "--config", str(daemon_dirs.config),
                           "--state-dir", str(daemon_dirs.state_dir)],
                          env=daemon_dirs.bus.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert str(daemon_dirs.config) in proc.stderr


def test_a_second_daemon_exits_with_a_clear_error_when_the_name_is_taken(daemon, tmp_path):
    proc = subprocess.run([str(BIN / "boottorrentd"), "--config", str(daemon.config),
                           "--state-dir", str(tmp_path / "s2"), "--runtime-dir",
                           str(tmp_path / "r2")],
                          env=daemon.bus.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "already owned" in proc.stderr


def test_only_root_may_own_the_name(daemon_dirs):
    proc = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus",
         "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName", "string:org.boottorrent1",
         "uint32:4"],
        env=daemon_dirs.bus.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "AccessDenied" in proc.stderr or "not allowed" in proc.stderr


def test_the_seeds_own_boottorrent_yaml_runs_the_daemon(daemon_dirs):
    seed = Path(__file__).resolve().parent.parent / "data/seed/skel/Boottorrent.yaml"
    daemon_dirs.config.write_text(seed.read_text())
    daemon_dirs.start()
    assert "stopped" in daemon_dirs.ctl("status").stdout


def test_init_then_import_round_trip(daemon, tmp_path):
    project = tmp_path / "proj"
    created = daemon.ctl("init", str(project))
    assert "Boottorrent.yaml" in created.stdout
    assert (project / "oss").is_dir()
    make_os(project / "oss/testos")
    make_os(project / "oss/second", config="dispname: Second\nmethod: bin\nbin: vmlinuz\n")
    config = (project / "Boottorrent.yaml").read_text().replace("timeout: 30", "timeout: 5")
    (project / "Boottorrent.yaml").write_text(config)

    imported = daemon.ctl("import", str(project))
    assert "2 OS" in imported.stdout
    names = [o["name"] for o in json.loads(daemon.ctl("list-os", "--json").stdout)]
    assert names == ["second", "testos"]
    assert daemon.config.read_text() == config

    again = daemon.ctl("init", str(project), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_import_of_an_invalid_project_changes_nothing(daemon, tmp_path):
    project = tmp_path / "proj"
    daemon.ctl("init", str(project))
    make_os(project / "oss/good")
    make_os(project / "oss/bad", config="method: kexec\nkernel: nothere\ninitrd: initrd.img\n")
    before = daemon.config.read_text()
    result = daemon.ctl("import", str(project), check=False)
    assert result.returncode == 1 and "nothere" in result.stderr
    assert daemon.config.read_text() == before
    assert json.loads(daemon.ctl("list-os", "--json").stdout) == []


def test_status_json_and_text(daemon, tmp_path):
    daemon.ctl("add-os", "a", str(make_os(tmp_path / "a")))
    status = json.loads(daemon.ctl("status", "--json").stdout)
    assert status["state"] == "stopped"
    assert status["os_count"] == 1
    assert status["library_bytes"] == 24000
    assert status["state_directory"] == str(daemon.state_dir)
    assert "stopped" in daemon.ctl("status").stdout


def test_cli_says_when_the_daemon_is_not_running(system_bus):
    result = subprocess.run([str(BIN / "boottorrentctl"), "status"], env=system_bus.env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "boottorrentd is not running" in result.stderr


def test_concurrent_reads_during_adds_from_threads(daemon, tmp_path):
    """Several adds at once each complete; the library lists them all."""
    folders = [make_os(tmp_path / f"os{i}", config=f"dispname: OS {i}\nmethod: kexec\n"
                       "kernel: vmlinuz\ninitrd: initrd.img\n") for i in range(4)]
    errors: list[str] = []

    def add(i: int) -> None:
        r = daemon.ctl("add-os", f"os{i}", str(folders[i]), check=False)
        if r.returncode:
            errors.append(r.stderr)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(json.loads(daemon.ctl("list-os", "--json").stdout)) == 4
    torrent = read_torrent((daemon.state_dir / "torrents/os0.torrent").read_bytes())
    assert torrent.name == "os0"


def test_reload_of_a_stopped_daemon_announces_the_new_configuration(daemon):
    changed = ("type='signal',interface='org.freedesktop.DBus.Properties',"
               "member='PropertiesChanged',path='/org/boottorrent1'")
    # Manager signals of a kind a reload never sends: the monitor shows only `changed`.
    monitor = daemon.monitor("BuildProgress", changed)
    try:
        daemon.config.write_text(daemon.config.read_text()
                                 + "dnsmasq:\n  interface: bt7\nhttp:\n  port: 8099\n")
        reloaded = daemon.ctl("reload")
    finally:
        time.sleep(0.3)
        monitor.send_signal(signal.SIGINT)
        out = monitor.communicate(timeout=10)[0]
    assert "dnsmasq.interface" in reloaded.stdout and "http.port" in reloaded.stdout
    announced: dict = {}
    for line in out.splitlines():
        event = json.loads(line)
        if event.get("member") == "PropertiesChanged":
            announced.update(event["payload"]["data"][1])
    assert announced["Interface"]["data"] == "bt7"
    assert announced["HTTPPort"]["data"] == 8099
    assert daemon.busctl("get-property", *MANAGER, "HTTPPort").stdout.split() == ["q", "8099"]


def test_reload_of_a_bad_file_is_refused_with_the_key_and_changes_nothing(daemon):
    daemon.config.write_text(daemon.config.read_text() + "http:\n  port: eighty\n")

    refused = daemon.ctl("reload", check=False)

    assert refused.returncode == 1
    assert "http.port: expected a whole number" in refused.stderr
    assert daemon.busctl("get-property", *MANAGER, "HTTPPort").stdout.split() == ["q", "8080"]


def test_add_os_from_a_live_build_tree_makes_a_live_os_with_its_own_kernel(daemon, tmp_path):
    tree = tmp_path / "tree"
    (tree / "live").mkdir(parents=True)
    (tree / "live/vmlinuz-6.12.10-amd64").write_bytes(b"k" * 3000)
    (tree / "live/initrd.img-6.12.10-amd64").write_bytes(b"i" * 2000)
    (tree / "live/filesystem.squashfs").write_bytes(b"s" * 5000)
    monitor = daemon.monitor("OSProgress")
    try:
        daemon.ctl("add-os", "desk", "--from", str(tree), "--cmdline", "quiet splash")
    finally:
        time.sleep(0.3)
        monitor.send_signal(signal.SIGINT)
        out = monitor.communicate(timeout=10)[0]

    shown = json.loads(daemon.ctl("show-os", "desk", "--json").stdout)
    assert shown["method"] == "live"
    assert shown["fields"] == {"squashfs": "filesystem.squashfs", "init": "/sbin/init",
                               "kernel": "vmlinuz", "initrd": "initrd.img",
                               "cmdline": "quiet splash"}
    assert shown["size_bytes"] == 10000
    assert (daemon.state_dir / "oss/desk/vmlinuz").read_bytes() == b"k" * 3000
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    phases = {e["payload"]["data"][1] for e in events if e.get("member") == "OSProgress"}
    assert phases == {"copying", "hashing"}


def test_add_os_from_a_folder_it_does_not_know_says_what_it_looked_for(daemon, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff/notes.txt").write_text("not an OS")

    failed = daemon.ctl("add-os", "x", "--from", str(tmp_path / "stuff"), check=False)

    assert failed.returncode == 1
    assert "live/filesystem.squashfs" in failed.stderr and "boot/vmlinuz-VERSION" in failed.stderr
    assert "notes.txt" in failed.stderr
    assert json.loads(daemon.ctl("list-os", "--json").stdout) == []
    # Nothing half-made is left in the library.
    assert list((daemon.state_dir / "oss").iterdir()) == []


def test_add_os_takes_a_folder_or_from_but_not_both(daemon, tmp_path):
    src = make_os(tmp_path / "src")

    both = daemon.ctl("add-os", "x", str(src), "--from", str(src), check=False)
    neither = daemon.ctl("add-os", "x", check=False)

    for failed in (both, neither):
        assert failed.returncode == 1
        assert "add-os NAME DIR" in failed.stderr and "--from DIR|ISO" in failed.stderr
    assert json.loads(daemon.ctl("list-os", "--json").stdout) == []
