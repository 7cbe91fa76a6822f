"""Least privilege, shown (issue 14): every D-Bus method that changes something is
refused to a caller that is neither root nor granted the polkit action, with the named
AccessDenied, and changes nothing."""

import json
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon, make_os, world_readable_tmpdir
from tests.reliability import current_test, record

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# What a read needs no right for: the rest of the Manager's methods change something.
READING = {"GetOS"}

# Run as the unprivileged user: introspect the Manager and call every method once with
# arguments of its signature; print {method: error name or "ok"}.
CALLER = r"""
import asyncio, json, sys
import xml.etree.ElementTree as ET
from boottorrentd import api
from boottorrentd.bus.backend import Message, MessageBus, MessageType, Variant

SAMPLE = {"s": "x", "a{sv}": {}, "b": False}

async def main(address, source):
    bus = await MessageBus(bus_address=address).connect()
    intro = await bus.call(Message(destination=api.BUS_NAME, path=api.MANAGER_PATH,
                                   interface="org.freedesktop.DBus.Introspectable",
                                   member="Introspect"))
    iface = next(i for i in ET.fromstring(intro.body[0]).iter("interface")
                 if i.get("name") == api.MANAGER_IFACE)
    out = {}
    for m in iface.iter("method"):
        types = [a.get("type") for a in m.findall("arg") if a.get("direction", "in") == "in"]
        body = [source if i == 1 and t == "s" else SAMPLE[t] for i, t in enumerate(types)]
        reply = await bus.call(Message(destination=api.BUS_NAME, path=api.MANAGER_PATH,
                                       interface=api.MANAGER_IFACE, member=m.get("name"),
                                       signature="".join(types), body=body))
        out[m.get("name")] = (reply.error_name, reply.body[0] if reply.body else "") \
            if reply.message_type == MessageType.ERROR else ("ok", "")
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_every_changing_method_is_refused_to_an_unprivileged_caller_by_name(
        daemon: Daemon):
    daemon.ctl("add-os", "x", str(make_os(world_readable_tmpdir("bt-src-") / "x")))
    source = make_os(world_readable_tmpdir("bt-src-") / "y")
    before = sorted(p.name for p in daemon.state_dir.rglob("*"))
    config = daemon.config.read_bytes()

    answer = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-c", CALLER, daemon.bus.address, str(source)],
        env=dict(daemon.bus.env, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=120, check=True)
    results = json.loads(answer.stdout)

    changing = set(results) - READING
    assert changing >= {"AddOS", "RemoveOS", "StartSession", "StopSession", "Reload",
                        "AssignClient", "UnassignClient", "BuildClientImage",
                        "ImportProject", "StopSeeding"}
    for name in sorted(changing):
        error, message = results[name]
        assert error == "org.freedesktop.DBus.Error.AccessDenied", (name, error, message)
        assert f"{name} needs root or the polkit action org.boottorrent1.manage" in message
    assert results["GetOS"][0] == "ok"
    assert sorted(p.name for p in daemon.state_dir.rglob("*")) == before
    assert daemon.config.read_bytes() == config
    assert daemon.ctl("status", "--json").stdout and "stopped" in daemon.ctl("status").stdout
    record("least privilege", "every changing Manager method called by an unprivileged "
           "user (nobody) on the bus", len(changing),
           f"all {len(changing)} refused with org.freedesktop.DBus.Error.AccessDenied naming "
           "the polkit action; nothing changed", current_test())


# What the hardened unit leaves out of the daemon's bounding set (and more of its kind).
UNIT_LACKS = "-chown,-dac_override,-dac_read_search,-fowner,-fsetid"
SEED_AS_USER = ("tests/integration/test_seeding.py::"
                "test_the_seed_runs_as_the_given_user_and_seeds_what_that_user_can_read")


def test_both_seed_engines_run_as_the_user_for_a_daemon_without_chown_or_dac_override():
    """The seed test that runs the engines as nobody, again in a root process that has,
    like the unit's daemon, neither CAP_CHOWN nor CAP_DAC_OVERRIDE but the user's group
    (SupplementaryGroups=): the engines' folders are shared through the group."""
    group = pwd.getpwnam("nobody").pw_gid
    proc = subprocess.run(
        ["setpriv", f"--groups={group}", f"--bounding-set={UNIT_LACKS}", "--",
         sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SEED_AS_USER],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]
