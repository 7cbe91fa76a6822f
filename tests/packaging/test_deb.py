"""The Debian package, for real: `make deb` builds it in a Debian trixie root, lintian is
clean, the unit verifies and is hardened, and the package installs, works and goes away
cleanly in a fresh trixie system with systemd as PID 1 (systemd-nspawn -b, its own
network namespace: the boot interface is a veth pair that exists only in there).

    .venv/bin/python -m pytest tests/packaging -q -x        (add -s to watch each step)

The tests run in file order and share one booted system (module scope): install, unit
checks, the service at work, then removal and purge.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import current_test, record

from .container import Container, log

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
UNIT = "boottorrentd.service"
GRUB_BOOT_RECORD = "grub-common.service"
# The boot network inside the container: veth bt0 (ours) <-> bt1, a 10.x subnet.
IFACE, PEER = "bt0", "bt1"
HOST_IP = "10.213.0.1"
CONFIG = f"""\
boottorrent:
  version: 0
  host_ip: {HOST_IP}
  default_os: tiny
dnsmasq:
  interface: {IFACE}
  dhcp_range: 10.213.0.50,10.213.0.150,12h
"""
SYSTEM_USER = "boottorrent"
MAX_EXPOSURE = 2.6


def step(text: str) -> float:
    print(f"\n--> {text}", flush=True)
    return time.monotonic()


def done(start: float) -> None:
    log(f"({time.monotonic() - start:.1f} s)")


def _deb() -> Path | None:
    debs = sorted(DIST.glob("boottorrent_*_all.deb"))
    return debs[-1] if debs else None


# --- the build -------------------------------------------------------------------------------


def test_make_deb_builds_the_package() -> None:
    start = step("make deb (a trixie root made with debootstrap, cached; build; lintian)")
    proc = subprocess.run(["make", "-C", str(REPO), "deb"], capture_output=True, text=True,
                          timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("==>") or "lintian:" in line:
            log(line)
    assert proc.returncode == 0, f"make deb failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    deb = _deb()
    assert deb is not None, "make deb left no dist/boottorrent_*_all.deb"
    contents = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True,
                              text=True).stdout
    for path in (
        "./usr/sbin/boottorrentd",
        "./usr/bin/boottorrentctl",
        # trixie's debhelper puts units under /usr/lib, not /lib.
        f"./usr/lib/systemd/system/{UNIT}",
        "./usr/lib/sysusers.d/boottorrent.conf",
        "./usr/share/dbus-1/system.d/org.boottorrent1.conf",
        "./usr/share/dbus-1/system-services/org.boottorrent1.service",
        "./usr/share/polkit-1/actions/org.boottorrent1.policy",
        "./etc/boottorrent/boottorrent.yaml",
        "./usr/share/man/man8/boottorrentd.8.gz",
        "./usr/share/man/man1/boottorrentctl.1.gz",
        "./usr/share/man/man5/boottorrent.yaml.5.gz",
        "./usr/share/bash-completion/completions/boottorrentctl",
        "./usr/lib/python3/dist-packages/boottorrentd/daemon.py",
    ):
        assert f" {path}\n" in contents + "\n", f"{deb.name} lacks {path}"
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], check=True,
                             capture_output=True, text=True).stdout
    # pyproject requires dbus-fast, so dh_python3 depends on it.
    assert re.search(r"\bpython3-dbus-fast\b", depends), depends
    assert "python3-libtorrent" in depends, depends
    # dnsmasq-base, never dnsmasq: that one's own service would fight the daemon's. The
    # same for transmission-daemon and opentracker, which are only suggested.
    assert "dnsmasq-base" in depends and not re.search(r"\bdnsmasq\s*(,|$)", depends)
    assert not re.search(r"\b(transmission-daemon|opentracker)\b", depends), depends
    log(f"built {deb.name} ({deb.stat().st_size // 1024} KiB)")
    done(start)


def test_the_desktop_tool_is_a_package_of_its_own() -> None:
    deb = _deb()
    assert deb is not None, "no package: run make deb"
    gtk = deb.with_name(deb.name.replace("boottorrent_", "boottorrent-gtk_", 1))
    assert gtk.exists(), f"make deb left no {gtk.name}"

    def listing(package: Path) -> str:
        return subprocess.run(["dpkg-deb", "-c", str(package)], check=True,
                              capture_output=True, text=True).stdout + "\n"

    contents = listing(gtk)
    for path in (
        "./usr/bin/boottorrent-gtk",
        "./usr/lib/python3/dist-packages/boottorrentgtk/app.py",
        "./usr/lib/python3/dist-packages/boottorrentgtk/style.css",
        "./usr/share/applications/org.boottorrent.Gtk.desktop",
        "./usr/share/metainfo/org.boottorrent.Gtk.metainfo.xml",
        "./usr/share/icons/hicolor/scalable/apps/org.boottorrent.Gtk.svg",
        "./usr/share/man/man1/boottorrent-gtk.1.gz",
    ):
        assert f" {path}\n" in contents, f"{gtk.name} lacks {path}"
    # The daemon's package carries none of it, and the desktop tool nothing of the daemon's.
    assert "boottorrentgtk" not in listing(deb) and "boottorrent-gtk" not in listing(deb)
    assert "boottorrentd/" not in contents
    depends = subprocess.run(["dpkg-deb", "-f", str(gtk), "Depends"], check=True,
                             capture_output=True, text=True).stdout
    for package in ("python3-gi", "gir1.2-gtk-4.0", "gir1.2-adw-1"):
        assert re.search(rf"\b{re.escape(package)}\b", depends), depends
    version = deb.name.split("_")[1]
    assert f"boottorrent (= {version})" in depends, depends


def test_lintian_is_clean() -> None:
    deb = _deb()
    assert deb is not None, "no package: run make deb"
    report = deb.with_name(deb.name.removesuffix(".deb") + ".lintian.txt")
    assert report.exists(), f"no lintian report {report.name}: make deb writes it"
    text = report.read_text()
    tags = [line for line in text.splitlines() if re.match(r"^[EW]: ", line)]
    log(f"lintian: {len(tags)} errors and warnings")
    assert not tags, "lintian:\n" + "\n".join(tags)


def test_generated_man_pages_cover_every_option(tmp_path: Path) -> None:
    """The pages are made from the parsers: every option and command is in them."""
    subprocess.run([sys.executable, str(REPO / "packaging/manpages.py"), str(tmp_path)],
                   check=True, capture_output=True, cwd=REPO)
    from boottorrentctl.cli import build_parser as ctl_parser
    from boottorrentd.daemon import build_parser as daemon_parser

    for page, parser in (("boottorrentd.8", daemon_parser()),
                         ("boottorrentctl.1", ctl_parser())):
        text = (tmp_path / page).read_text().replace("\\-", "-")
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{page} does not document {option}"
            for name, sub in (getattr(action, "choices", None) or {}).items():
                if hasattr(sub, "_actions"):
                    assert f"\\fB{name}\\fR" in text, f"{page} lacks the command {name}"
                    for sub_action in sub._actions:
                        for option in sub_action.option_strings:
                            assert option in text, f"{page}: {name} {option} undocumented"
    yaml5 = (tmp_path / "boottorrent.yaml.5").read_text().replace("\\-", "-")
    for key in ("boottorrent.host_ip", "dnsmasq.interface", "dnsmasq.dhcp_range"):
        assert key in yaml5
    proc = subprocess.run(["man", "--warnings", "-l", "-Tutf8", "-Z",
                           *(str(p) for p in sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True, env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


# --- one fresh trixie system ----------------------------------------------------------------


@pytest.fixture(scope="module")
def system() -> Iterator[Container]:
    deb = _deb()
    if deb is None:
        pytest.fail("no dist/boottorrent_*_all.deb: run make deb (test_make_deb does)")
    start = step(f"a fresh {deb.name} install target: a trixie system from the cached base")
    box = Container.fresh(f"boottorrent-accept-{os.getpid()}")
    keep = os.environ.get("BOOTTORRENT_KEEP_CONTAINER") == "1"
    try:
        (box.root / "root" / deb.name).write_bytes(deb.read_bytes())
        # linux-image-amd64: a kernel and its modules for build-client (installed later).
        packages = f"/root/{deb.name} polkitd linux-image-amd64"
        log("fetching its dependencies from the archive (host side: the container has "
            "no network but its own veth pair)")
        box.download(packages)
        box.boot()
        # What the fresh system has before the install, for test_the_install_starts_nothing.
        box.sh("systemctl list-unit-files --no-legend --no-pager > /root/units-before")
        (box.root / "root" / "listeners-before").write_text(box.in_netns("ss", "-Hlntu"))
        done(start)

        start = step(f"apt-get install ./{deb.name} with the archive's dependencies")
        # --no-install-recommends: the kernel and QEMU that the lab recommends are big
        # and not needed here; polkitd (recommended) is installed for the refused call.
        box.sh(f"cd /root && {{ apt-get install -y -q --no-install-recommends ./{deb.name} "
               "polkitd > install.log 2>&1 || { tail -40 install.log; exit 1; }; } && "
               "grep -E '^(Unpacking boottorrent|Setting up boottorrent|Created symlink)' "
               "install.log", timeout=600)
        assert "install ok installed" in box.sh("dpkg-query -W -f='${Status}' boottorrent")
        done(start)
        yield box
    except BaseException:
        keep = keep or os.environ.get("BOOTTORRENT_KEEP_FAILED") == "1"
        raise
    finally:
        box.close(keep=keep)


def _words(text: str) -> set[str]:
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _listeners(text: str) -> set[tuple[str, str]]:
    # (protocol, local address:port) of each line of `ss -Hlntu`.
    return {(f[0], f[4]) for f in (line.split() for line in text.splitlines()) if len(f) > 4}


def test_the_install_starts_and_enables_nothing_but_boottorrentd(system: Container) -> None:
    box = system
    step("every unit the install brought in: is-enabled, is-active; then ss -lntu")
    before = _words(box.run("cat /root/units-before", check=True).stdout)
    after = _words(box.run("systemctl list-unit-files --no-legend --no-pager",
                           check=True).stdout)
    states = {}
    for unit in sorted(after - before):
        enabled = box.run(f"systemctl is-enabled {unit}").stdout.strip()
        active = box.run(f"systemctl is-active {unit}").stdout.strip()
        states[unit] = (enabled, active)
        log(f"{unit}: {enabled or '-'}, {active or '-'}")
    assert UNIT in states, f"the install brought no {UNIT}: {sorted(states)}"
    # grub-common comes with the signed GRUB of the UEFI chain (grub-efi-amd64-signed
    # depends on it) and enables its boot-record oneshot, which every GRUB-booted Debian
    # has already: it records a successful boot at start-up and runs nothing after. It
    # must not run now; any other enabled or started unit fails the test.
    boot_record = states.pop(GRUB_BOOT_RECORD, None)
    assert boot_record is None or boot_record[1] == "inactive", boot_record
    running = {u: s for u, s in states.items()
               if u != UNIT and (s[0] in ("enabled", "enabled-runtime", "linked")
                                 or s[1] in ("active", "activating", "reloading"))}
    assert not running, f"the install enabled or started other services: {running}"

    # The daemon itself starts idle: nothing listens before `boottorrentctl start`.
    listening = box.in_netns("ss", "-Hlntu")
    log(listening or "(no listener)")
    new = _listeners(listening) - _listeners((box.root / "root/listeners-before").read_text())
    assert not new, f"listeners the install opened: {sorted(new)}\n{listening}"


def test_unit_verifies_without_a_word(system: Container) -> None:
    step(f"systemd-analyze verify {UNIT} (it exits 0 on bad keys: any output fails)")
    proc = system.run(f"systemd-analyze verify /usr/lib/systemd/system/{UNIT}")
    out = (proc.stdout + proc.stderr).strip()
    log(out or "(no output)")
    assert proc.returncode == 0 and not out, out


def test_security_exposure(system: Container) -> None:
    step(f"systemd-analyze security {UNIT}: exposure at most {MAX_EXPOSURE}")
    proc = system.run(f"systemd-analyze security --no-pager {UNIT}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith("✗"):
            log(" ".join(line.split()[:2]) + "  " + line.split()[-1])
    log(match.group(0))
    # The figure is rounded; --threshold compares the exact one (scaled by 10).
    strict = system.run(f"systemd-analyze security --threshold={int(MAX_EXPOSURE * 10)} {UNIT}")
    assert strict.returncode == 0, f"exposure {match.group(1)} > {MAX_EXPOSURE}"


def _status(box: Container) -> dict:
    return json.loads(box.run("boottorrentctl status --json", check=True).stdout)


def _cgroup_procs(box: Container) -> set[int]:
    cgroup = box.sh(f"systemctl show -P ControlGroup {UNIT}")
    assert cgroup.endswith(f"/{UNIT}"), cgroup
    # cgroup v2 (/sys/fs/cgroup), or the unified/systemd hierarchies of a hybrid host.
    procs = box.sh(
        f"for d in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do "
        f"  f=$d{cgroup}/cgroup.procs; if [ -r $f ]; then echo \"# $f\"; cat $f; break; fi; "
        f"done")
    return {int(p) for p in procs.splitlines() if p.strip().isdigit()}


def _owner(box: Container, pid: int) -> str:
    uid = box.run(f"awk '/^Uid:/ {{ print $2 }}' /proc/{pid}/status", check=True).stdout.strip()
    return box.run(f"getent passwd {uid} | cut -d: -f1", check=True).stdout.strip() or uid


def test_the_service_at_work(system: Container) -> None:
    box = system

    start = step("systemctl enable --now boottorrentd → active, idle")
    box.sh("systemctl enable --now boottorrentd 2>&1; systemctl is-active boottorrentd")
    assert box.run("systemctl is-active boottorrentd").stdout.strip() == "active"
    status = _status(box)
    log(f"state {status['state']}, children {status['children']}")
    assert status["state"] == "stopped" and not status["children"]
    assert SYSTEM_USER in box.sh(f"getent passwd {SYSTEM_USER}")
    done(start)

    start = step("busctl introspect org.boottorrent1 /org/boottorrent1")
    out = box.run("busctl introspect --no-pager org.boottorrent1 /org/boottorrent1",
                  check=True).stdout
    assert "org.boottorrent1.Manager" in out, out
    members: dict[str, list[str]] = {}
    interface = ""
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == "interface":
            interface = fields[0]
        elif len(fields) > 1 and fields[1] == "method":
            members.setdefault(interface, []).append(fields[0])
    log(f"org.boottorrent1.Manager methods: {' '.join(members['org.boottorrent1.Manager'])}")
    done(start)

    start = step("boottorrentctl add-os tiny /srv/tiny (a small kexec OS made here) → listed")
    box.sh("mkdir -p /srv/tiny && head -c 1500000 /dev/urandom > /srv/tiny/vmlinuz && "
           "head -c 700000 /dev/urandom > /srv/tiny/initrd.img && "
           "boottorrentctl add-os tiny /srv/tiny --method kexec --kernel vmlinuz "
           "--initrd initrd.img 2>&1 | tail -1")
    listed = box.sh("boottorrentctl list-os")
    assert re.search(r"^tiny\s", listed, re.M), listed
    done(start)

    start = step(f"a boot network: veth {IFACE} <-> {PEER} in the container's own netns; "
                 f"the config points at it")
    box.in_netns("ip", "link", "add", IFACE, "type", "veth", "peer", "name", PEER)
    box.in_netns("ip", "link", "set", PEER, "up")
    box.sh(f"cat > /etc/boottorrent/boottorrent.yaml <<'EOF'\n{CONFIG}EOF\n"
           "systemctl restart boottorrentd && systemctl is-active boottorrentd")
    assert HOST_IP not in box.in_netns("ip", "-4", "-br", "addr", "show", IFACE), \
        "the daemon touched the network before a session was started"
    done(start)

    start = step("boottorrentctl start → children in the unit's cgroup, as the system user")
    proc = box.run("boottorrentctl start", timeout=120)
    log((proc.stdout + proc.stderr).strip())
    if proc.returncode != 0:
        log(box.run("journalctl -u boottorrentd --no-pager -n 40").stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 60
    while True:
        status = _status(box)
        children = {c["name"]: c for c in status["children"]}
        if children and all(c["state"] == "running" for c in children.values()):
            break
        assert time.monotonic() < deadline, f"children not running: {status['children']}"
        time.sleep(0.5)
    log(f"state {status['state']}: " + ", ".join(
        f"{c['name']} pid {c['pid']}" for c in status["children"]))
    assert HOST_IP in box.in_netns("ip", "-4", "-br", "addr", "show", IFACE)
    listening = box.in_netns("ss", "-Hltn")
    for what, port in (("tracker", 10001), ("seed", 51420), ("boot HTTP server", 8080)):
        # libtorrent binds to the boot interface too (ss shows address%interface).
        assert re.search(rf"(^|\s|\[::ffff:){re.escape(HOST_IP)}(%{IFACE})?\]?:{port}\s",
                         listening), (
            f"the {what} does not listen on {HOST_IP}:{port}:\n{listening}")
    procs = _cgroup_procs(box)
    main_pid = int(box.sh(f"systemctl show -P MainPID {UNIT}"))
    assert main_pid in procs
    owners = {}
    for name, child in children.items():
        assert child["pid"] in procs, f"{name} (pid {child['pid']}) is not in {UNIT}'s cgroup"
        owners[name] = _owner(box, child["pid"])
    log("children run as: " + ", ".join(f"{n}: {u}" for n, u in owners.items()))
    assert "ltseed" in children and "dnsmasq" in children, children
    wrong = {n: u for n, u in owners.items() if u != SYSTEM_USER}
    assert not wrong, (f"children should run as {SYSTEM_USER}, but: {wrong} "
                       "(the daemon decides the user it starts them as)")
    done(start)

    start = step("journalctl -u boottorrentd -o json: the children under their own identifiers")
    wanted = {f"boottorrentd-{name}" for name in children}
    deadline = time.monotonic() + 15
    while True:
        out = box.run(f"journalctl -u {UNIT} -o json --no-pager", check=True).stdout
        idents = {json.loads(line).get("SYSLOG_IDENTIFIER") for line in out.splitlines()
                  if line.startswith("{")}
        if wanted <= idents or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    log(f"identifiers: {sorted(i for i in idents if i)}")
    assert wanted <= idents, f"missing {wanted - idents}"
    done(start)

    _reload_in_place(box, {name: c["pid"] for name, c in children.items()})

    start = step("boottorrentctl stop → no children, the boot address gone")
    box.sh("boottorrentctl stop")
    status = _status(box)
    assert status["state"] == "stopped" and not status["children"], status
    assert _cgroup_procs(box) == {main_pid}
    assert HOST_IP not in box.in_netns("ip", "-4", "-br", "addr", "show", IFACE)
    done(start)

    start = step("an unprivileged caller (nobody) may read but not change")
    nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
    read = box.run(f"{nobody} boottorrentctl list-os")
    assert read.returncode == 0 and "tiny" in read.stdout, read.stdout + read.stderr
    refused = box.run(f"{nobody} boottorrentctl remove-os tiny")
    log(f"remove-os as nobody: exit {refused.returncode}: {refused.stderr.strip()}")
    assert refused.returncode == 1
    assert "polkit" in refused.stderr or "denied" in refused.stderr.lower(), refused.stderr
    assert "tiny" in box.sh("boottorrentctl list-os")
    done(start)

    start = step("bus activation: a stopped daemon starts on the first call")
    box.sh("systemctl stop boottorrentd; systemctl is-active boottorrentd || true")
    assert box.run("systemctl is-active boottorrentd").stdout.strip() == "inactive"
    box.sh("busctl call org.boottorrent1 /org/boottorrent1 org.freedesktop.DBus.Properties "
           "Get ss org.boottorrent1.Manager Version")
    assert box.run("systemctl is-active boottorrentd").stdout.strip() == "active"
    done(start)

    start = step("man pages and bash completion are installed and work")
    for page in ("boottorrentd.8", "boottorrentctl.1", "boottorrent.yaml.5"):
        box.sh(f"man -w {page.rsplit('.', 1)[1]} {page.rsplit('.', 1)[0]}")
    completed = box.sh(
        "bash -c '. /usr/share/bash-completion/bash_completion; "
        "_comp_load boottorrentctl 2>/dev/null || "
        ". /usr/share/bash-completion/completions/boottorrentctl; "
        "COMP_WORDS=(boottorrentctl show-os \"\"); COMP_CWORD=2; "
        "COMP_LINE=\"boottorrentctl show-os \"; COMP_POINT=${#COMP_LINE}; "
        "_boottorrentctl boottorrentctl \"\" show-os; "
        "echo ${COMPREPLY[*]}'")
    assert completed.split() == ["tiny"], completed
    done(start)


def _write_config(box: Container, text: str) -> None:
    (box.root / "etc/boottorrent/boottorrent.yaml").write_text(text)


def _reload_in_place(box: Container, pids: dict[str, int]) -> None:
    """systemctl reload with a running session: live keys at once, the rest named, an
    invalid file refused; the children and the daemon run on throughout."""
    start = step("edit the timeout, systemctl reload → the next boot script has it")
    mac = "52:54:00:00:00:01"
    # The menu is only rendered once there is a phase-1 image (build-client makes the
    # real one later).
    box.sh("mkdir -p /var/lib/boottorrent/phase1 && for f in vmlinuz initrd.img; do "
           "echo phase-1 > /var/lib/boottorrent/phase1/$f; done")
    fetch = ("python3 -c \"import urllib.request as u; print(u.urlopen("
             f"'http://{HOST_IP}:8080/boot/{mac}.ipxe').read().decode())\"")
    assert "--timeout 30000" in box.run(fetch, check=True).stdout
    main_pid = box.sh(f"systemctl show -P MainPID {UNIT}")
    edited = CONFIG.replace("  default_os: tiny\n", "  default_os: tiny\n  timeout: 7\n")
    _write_config(box, edited)
    box.sh(f"systemctl reload {UNIT}")
    assert "--timeout 7000" in box.run(fetch, check=True).stdout
    status = _status(box)
    assert (status["state"], status["reason"]) == ("running", "")
    assert {c["name"]: c["pid"] for c in status["children"]} == pids
    done(start)

    start = step("edit the interface, systemctl reload → the status names it; the session "
                 "runs on bt0")
    _write_config(box, edited.replace(f"interface: {IFACE}", "interface: bt9"))
    box.sh(f"systemctl reload {UNIT}")
    status_text = box.sh("boottorrentctl status | head -1")
    assert "restart the session to apply: dnsmasq.interface" in status_text
    assert _status(box)["interface"] == IFACE
    done(start)

    start = step("an invalid edit: systemctl reload and boottorrentctl reload are refused "
                 "with the key; daemon and session unaffected")
    _write_config(box, edited + "http:\n  port: eighty\n")
    by_systemctl = box.run(f"systemctl reload {UNIT}")
    log(f"systemctl reload: exit {by_systemctl.returncode}")
    status_line = box.sh(f"systemctl show -P StatusText {UNIT}")
    assert "Reload refused" in status_line and "http.port" in status_line, status_line
    by_ctl = box.run("boottorrentctl reload")
    log(f"boottorrentctl reload: exit {by_ctl.returncode}: {by_ctl.stderr.strip()}")
    assert by_ctl.returncode == 1 and "http.port" in by_ctl.stderr
    assert box.sh(f"systemctl is-active {UNIT}") == "active"
    assert box.sh(f"systemctl show -P MainPID {UNIT}") == main_pid
    status = _status(box)
    assert status["state"] == "running"
    assert {c["name"]: c["pid"] for c in status["children"]} == pids
    assert "--timeout 7000" in box.run(fetch, check=True).stdout
    _write_config(box, CONFIG)
    box.sh(f"systemctl reload {UNIT} && rm -r /var/lib/boottorrent/phase1")
    assert _status(box)["reason"] == ""
    done(start)


def test_add_os_names_the_fix_for_a_folder_the_sandbox_cannot_read(system: Container) -> None:
    """Without CAP_DAC_OVERRIDE and with home folders hidden, add-os refuses what it
    cannot read, and says what to do."""
    box = system
    start = step("add-os of a folder only its owner (nobody) may read, and of one in /root")
    box.sh("mkdir -p /srv/private /root/tiny && cp /srv/tiny/* /srv/private/ && "
           "cp /srv/tiny/* /root/tiny/ && chown -R nobody /srv/private && "
           "chmod 700 /srv/private")
    kexec = "--method kexec --kernel vmlinuz --initrd initrd.img"
    for name, folder, fix in (("private", "/srv/private", "chmod -R a+rX /srv/private"),
                              ("home", "/root/tiny", "copy the OS to a folder under /srv")):
        refused = box.run(f"boottorrentctl add-os {name} {folder} {kexec}")
        log(f"add-os {folder}: exit {refused.returncode}: {refused.stderr.strip()}")
        assert refused.returncode == 1 and fix in refused.stderr, refused.stderr
    assert not re.search(r"^(private|home)\s", box.sh("boottorrentctl list-os"), re.M)
    box.sh("rm -r /srv/private /root/tiny")
    done(start)


POLKIT_RULES = """\
// Written by tests/packaging: members of bootadmins may manage boottorrentd.
polkit.addRule(function(action, subject) {
    if (action.id == "org.boottorrent1.manage" && subject.isInGroup("bootadmins")) {
        return polkit.Result.YES;
    }
});
"""


def test_polkit_grants_the_manage_action_to_an_authorised_group(system: Container) -> None:
    box = system
    start = step("a polkit rule grants org.boottorrent1.manage to the group bootadmins: "
                 "its member may change the daemon, another user may not")
    box.sh("groupadd -f bootadmins && "
           "{ id labadmin >/dev/null 2>&1 || useradd -m -G bootadmins labadmin; } && "
           "{ id guest >/dev/null 2>&1 || useradd -m guest; }")
    rules = box.root / "etc/polkit-1/rules.d/50-boottorrent-admins.rules"
    rules.write_text(POLKIT_RULES)
    rules.chmod(0o644)
    # polkitd reads rules.d at its start (it is bus-activated: the first check starts it)
    # and again when the folder changes.
    box.sh("systemctl try-restart polkit.service; id labadmin; id guest")
    # Its own OS folder: `make reliability` runs this test without the ones before it.
    box.sh("mkdir -p /srv/granted && head -c 300000 /dev/urandom > /srv/granted/vmlinuz && "
           "head -c 200000 /dev/urandom > /srv/granted/initrd.img")
    add = "boottorrentctl add-os granted /srv/granted --method kexec --kernel vmlinuz " \
          "--initrd initrd.img"
    refused = box.run(f"runuser -u guest -- {add}")
    log(f"add-os as guest: exit {refused.returncode}: {refused.stderr.strip()}")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "AddOS needs root or the polkit action org.boottorrent1.manage" in refused.stderr
    assert not re.search(r"^granted\s", box.sh("boottorrentctl list-os"), re.M)

    granted = box.run(f"runuser -u labadmin -- {add}", timeout=120)
    log(f"add-os as labadmin: exit {granted.returncode}: "
        f"{(granted.stdout + granted.stderr).strip()[-300:]}")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert re.search(r"^granted\s", box.sh("boottorrentctl list-os"), re.M)
    refused_remove = box.run("runuser -u guest -- boottorrentctl remove-os granted")
    assert refused_remove.returncode == 1
    assert "org.boottorrent1.manage" in refused_remove.stderr, refused_remove.stderr
    box.sh("runuser -u labadmin -- boottorrentctl remove-os granted && rm -r /srv/granted")
    assert not re.search(r"^granted\s", box.sh("boottorrentctl list-os"), re.M)
    record("least privilege", "changing calls (AddOS, RemoveOS) by a user whose group a "
           "polkit rule grants org.boottorrent1.manage, and by a user outside it (polkitd, "
           "the installed package under systemd in a trixie container)", 4,
           "the member's 2 calls done (the OS added, then removed); the other user's 2 "
           "refused with AccessDenied naming the polkit action, nothing changed",
           current_test())
    done(start)


def test_build_client_works_in_the_sandbox(system: Container) -> None:
    """The phase-1 builder reads /boot and /usr/lib/modules from inside the hardened unit."""
    box = system
    start = step("a kernel to build from: apt-get install linux-image-amd64")
    box.sh("apt-get install -y -q --no-install-recommends linux-image-amd64 2>&1 | "
           "grep -E '^Setting up linux-image' ; ls /boot/vmlinuz-*", timeout=900)
    done(start)
    start = step("boottorrentctl build-client (run by the daemon, in its sandbox)")
    proc = box.run("boottorrentctl build-client", timeout=900)
    log((proc.stdout + proc.stderr).strip()[-2000:])
    if proc.returncode != 0:
        log(box.run(f"journalctl -u {UNIT} --no-pager -n 30").stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    box.sh("ls -la /var/lib/boottorrent/phase1/")
    done(start)


def test_remove_keeps_the_library_and_purge_leaves_nothing(system: Container) -> None:
    box = system
    start = step("apt-get remove boottorrent → the daemon stops, the library stays")
    box.sh("apt-get remove -y -q boottorrent 2>&1 | grep -E '^Removing' || true")
    state = box.run(f"systemctl show -P ActiveState {UNIT}").stdout.strip()
    log(f"{UNIT}: {state}")
    assert state in ("inactive", ""), state
    box.sh("ls /var/lib/boottorrent/oss/tiny && getent passwd boottorrent")
    done(start)

    start = step("apt-get purge boottorrent → no state, no config, no user")
    box.sh("apt-get purge -y -q boottorrent 2>&1 | grep -E '^Purging' || true")
    leftovers = box.run(
        "for p in /var/lib/boottorrent /etc/boottorrent /run/boottorrent "
        f"/usr/lib/systemd/system/{UNIT} /etc/systemd/system/multi-user.target.wants/{UNIT} "
        "/usr/share/dbus-1/system-services/org.boottorrent1.service "
        "/usr/lib/sysusers.d/boottorrent.conf; do [ -e $p ] && echo $p; done; "
        "getent passwd boottorrent; getent group boottorrent; "
        "dpkg-query -W -f='${db:Status-Abbrev}' boottorrent 2>/dev/null | grep -v '^un' ; "
        "ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | grep boottorrent; true"
    ).stdout.strip()
    log(f"left behind: {leftovers or 'nothing'}")
    assert not leftovers, leftovers
    done(start)
