"""`boottorrentctl lab` as a command: it boots, reports, and removes everything it made."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from boottorrentlab.devkit.daemon import venv_bin

LAB = [venv_bin("boottorrentctl"), "lab"]


def _leftovers(tag: str) -> list[str]:
    """Namespaces and processes of the lab `tag` that still exist."""
    found = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout.split() if tag in ns]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # Every process of a lab names its work folder or namespaces, both carry the tag.
        if f"lab-{tag}" in cmdline or f"bt-{tag}-" in cmdline:
            found.append(f"pid {proc.name}: {cmdline[:120]}")
    return found


def _tag(output: str) -> str:
    match = re.search(r"Starting the lab ([0-9a-f]{6})", output)
    assert match, output
    return match.group(1)


def _bus_dir(output: str) -> str:
    match = re.search(r"private bus unix:path=(\S+)/system_bus_socket", output)
    assert match, output
    return match.group(1)


def _bus_leftovers(bus_dir: str) -> list[str]:
    found = [bus_dir] if Path(bus_dir).exists() else []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and bus_dir.encode() in (proc / "cmdline").read_bytes():
                found.append(f"pid {proc.name}")
        except OSError:
            continue
    return found


def test_the_lab_command_boots_the_demo_os_and_leaves_nothing_behind(phase1_image):
    result = subprocess.run([*LAB, "--clients", "1", "--phase1", str(phase1_image)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 1 machine(s) booted demo from the swarm" in result.stdout
    assert "BOOTTORRENT-DEMO-OK" in result.stdout
    assert "Summary" in result.stdout and "Lab removed." in result.stdout
    tag = _tag(result.stdout)
    assert _leftovers(tag) == []
    assert _bus_leftovers(_bus_dir(result.stdout)) == []
    assert not list(Path("/tmp").glob(f"boottorrent-lab-{tag}-*"))


def test_ctrl_c_while_machines_boot_tears_the_lab_down(phase1_image):
    # Its own process group, like a shell job: the SIGINT goes to the whole group, as
    # Ctrl-C in a terminal does (the private bus's dbus-daemon gets it too).
    proc = subprocess.Popen([*LAB, "--clients", "2", "--phase1", str(phase1_image)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output = ""
    assert proc.stdout is not None
    powered_on = False
    for line in proc.stdout:
        output += line
        powered_on = powered_on or line.startswith("Powering on")
        # The first event of a machine (its DHCP request): it is in its firmware now.
        if powered_on and re.match(r"\[ *[0-9.]+s\] vm[0-9]", line):
            break
    tag, bus_dir = _tag(output), _bus_dir(output)
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    output += rest
    assert proc.returncode == 130, output
    assert "Tearing the lab down" in output
    assert _leftovers(tag) == [], output
    assert _bus_leftovers(bus_dir) == [], output
    for kept in Path("/tmp").glob(f"boottorrent-lab-{tag}-*"):
        # Interrupted runs keep their logs (only): consoles and the daemon's log.
        assert not [p for p in kept.iterdir() if p.is_dir()]
        shutil.rmtree(kept)
