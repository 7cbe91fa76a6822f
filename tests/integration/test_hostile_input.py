"""Hostile input at volume (issue 14): 10 000 D-Bus calls, 10 000 HTTP requests, 1 000
malformed configurations and 1 000 malformed OS specs, seeded (tests/hostile.py) -> no
crash, every refusal a named D-Bus error or a 4xx, nothing written outside the daemon's
own folders.

`make fuzz` runs them again with a random seed it prints and more of each.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import secrets
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from boottorrentd import api
from boottorrentd.api import METHODS
from boottorrentd.bus.backend import Message, MessageBus, MessageType, Variant
from boottorrentd.config import load_config
from boottorrentd.errors import BootTorrentError
from boottorrentd.library.osspec import load_os_config, method_keys, parse_os_config
from tests import hostile
from tests.conftest import Daemon, make_os
from tests.reliability import current_test, record

pytestmark = pytest.mark.integration

DBUS_CALLS = hostile.count(10_000)
CONFIGS = hostile.count(1_000)
OS_SPECS = hostile.count(1_000)

# A refusal names what was wrong: the daemon's own errors, and the bus library's
# (org.freedesktop.DBus.Error.*) for a call that does not fit the method. A ...Failed
# ("internal error": an exception the daemon did not expect) names nothing: a crash of
# that call.
OURS = {api.ERROR_INVALID_ARGUMENT, api.ERROR_NOT_FOUND, api.ERROR_EXISTS, api.ERROR_BUSY,
        api.ERROR_ACCESS_DENIED}


def named(error: str) -> bool:
    return error in OURS or (error.startswith("org.freedesktop.DBus.Error.")
                             and not error.endswith(".Failed"))


# Methods that start long work when called right: each is called right a few times only
# (StartSession fails at once in the daemon's empty network namespace: no eth0).
RARE = {"StartSession": 3, "StopSession": 3, "Reload": 3}


def snapshot(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file and folder under `roots`: its size and mtime."""
    seen = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if here / d not in skip]
            for name in [*dirnames, *filenames]:
                path = here / name
                if path in skip:
                    continue
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                seen[str(path)] = (st.st_size, st.st_mtime_ns)
    return seen


def changed(before: dict, after: dict) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# --- D-Bus ----------------------------------------------------------------------------

@pytest.fixture
def netns_daemon(daemon_dirs: Daemon) -> Iterator[Daemon]:
    """The daemon in a network namespace of its own, with no interface but lo: whatever
    a call makes it do, it touches no network of the host."""
    name = f"bt-fuzz-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    daemon_dirs.prefix = ["ip", "netns", "exec", name]
    daemon_dirs.start()
    yield daemon_dirs
    if daemon_dirs.process is not None:
        daemon_dirs.stop()
    subprocess.run(["ip", "netns", "del", name], check=False)


def sandbox(root: Path) -> list[str]:
    """Folders and files the calls name: a good OS, a folder with a symlink out, a file,
    an empty folder, a folder that is a symlink to /etc."""
    make_os(root / "os")
    (root / "escape").mkdir()
    (root / "escape" / "vmlinuz").symlink_to("/etc/passwd")
    (root / "escape" / "config.yaml").write_text("method: kexec\nkernel: vmlinuz\n"
                                                "initrd: ../../../../etc/shadow\n")
    (root / "file").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "etc").symlink_to("/etc")
    return [str(root / n) for n in ("os", "escape", "file", "empty", "etc")]


def methods(xml: str) -> dict[str, str]:
    """Each method of the introspection data: its input signature."""
    return {m.get("name", ""): "".join(a.get("type", "") for a in m.findall("arg")
                                       if a.get("direction", "in") == "in")
            for m in ET.fromstring(xml).iter("method")}


class Caller:
    """Random arguments for a D-Bus signature."""

    def __init__(self, r, paths: list[str], names: list[str]) -> None:
        self.r, self.paths, self.names = r, paths, names

    def string(self) -> str:
        roll = self.r.random()
        if roll < 0.25:
            return self.r.choice(self.paths)
        if roll < 0.4:
            return self.r.choice(self.names)
        # D-Bus carries no NUL in a string: the client library refuses to send one.
        return hostile.text(self.r).replace("\0", "")

    def variant(self) -> Variant:
        kind = self.r.randrange(6)
        if kind == 0:
            return Variant("b", self.r.random() < 0.5)
        if kind == 1:
            return Variant("s", self.string())
        if kind == 2:
            return Variant("a{ss}", {self.string(): self.string()
                                     for _ in range(self.r.randint(0, 3))})
        if kind == 3:
            return Variant("t", self.r.choice([0, 1, 2**64 - 1]))
        if kind == 4:
            return Variant("as", [self.string() for _ in range(self.r.randint(0, 3))])
        return Variant("v", Variant("i", -1))

    def value(self, sig: str) -> Any:
        if sig in "so":
            return self.string() if sig == "s" else self.r.choice(
                ["/", "/org/boottorrent1", "/org/boottorrent1/os/x", "/a/b_c"])
        if sig == "b":
            return self.r.random() < 0.5
        if sig in "ut":
            return self.r.choice([0, 1, 2**32 - 1]) if sig == "u" else 2**64 - 1
        if sig in "ix":
            return self.r.choice([0, -1, 2**31 - 1])
        if sig == "a{sv}":
            keys = ["link", "config", "from", "kernel_version",
                    *(self.string() for _ in range(2))]
            return {self.r.choice(keys): self.variant() for _ in range(self.r.randint(0, 3))}
        if sig == "a{ss}":
            return {self.string(): self.string() for _ in range(self.r.randint(0, 3))}
        if sig == "as":
            return [self.string() for _ in range(self.r.randint(0, 3))]
        if sig == "v":
            return self.variant()
        raise AssertionError(f"no generator for D-Bus type {sig!r}")


def split_signature(sig: str) -> list[str]:
    """'ssa{sv}' -> ['s', 's', 'a{sv}'] (the types this API uses)."""
    out, i = [], 0
    while i < len(sig):
        j = i + 1
        if sig[i] == "a":
            j = i + 2 if sig[i + 1] != "{" else sig.index("}", i) + 1
        out.append(sig[i:j])
        i = j
    return out


def test_10000_hostile_dbus_calls_are_each_answered_or_refused_by_name_and_write_nowhere(
        netns_daemon: Daemon, tmp_path: Path):
    d = netns_daemon
    paths = sandbox(tmp_path / "sandbox")
    watched = (tmp_path / "sandbox", d.config.parent, Path("/etc"), Path("/root"))
    own = (d.state_dir, d.runtime_dir, d.log_path)
    before = snapshot(*watched, skip=own)
    r = hostile.rng("dbus")
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    async def fuzz() -> dict[str, str]:
        bus = await MessageBus(bus_address=d.bus.address).connect()
        try:
            intro = await bus.call(Message(
                destination=api.BUS_NAME, path=api.MANAGER_PATH,
                interface="org.freedesktop.DBus.Introspectable", member="Introspect"))
            manager_methods = methods(intro.body[0])
            targets = [(api.MANAGER_IFACE, m, sig) for m, sig in manager_methods.items()]
            targets += [("org.freedesktop.DBus.Properties", "Get", "ss"),
                        ("org.freedesktop.DBus.Properties", "GetAll", "s"),
                        ("org.freedesktop.DBus.Properties", "Set", "ssv"),
                        ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "")]
            gen = Caller(r, paths, ["x", "os", "debian12", api.MANAGER_IFACE, api.OS_IFACE,
                                    "State", "Problem", "Name", "52:54:00:12:34:56"])
            rare = dict(RARE)
            for _ in range(DBUS_CALLS):
                iface, member, sig = r.choice(targets)
                call_sig = sig
                if r.random() < 0.15 or (member in rare and rare[member] <= 0):
                    # The wrong arguments: the bus library refuses them by name.
                    call_sig = r.choice(["s", "i", "ss", "a{sv}", "b", "sss", "as"])
                    if call_sig == sig:
                        call_sig += "s"
                elif member in rare:
                    rare[member] -= 1
                body = [gen.value(t) for t in split_signature(call_sig)]
                if member == "BuildClientImage" and call_sig == sig:
                    # Right options would build phase 1 for minutes: always one unknown.
                    body[0]["not-an-option"] = Variant("b", True)
                path = r.choice([api.MANAGER_PATH, api.MANAGER_PATH, api.os_path("os"),
                                 "/org/boottorrent1/nothing"])
                reply = await bus.call(Message(
                    destination=api.BUS_NAME, path=path, interface=iface, member=member,
                    signature=call_sig, body=body))
                if reply.message_type == MessageType.ERROR:
                    name = reply.error_name
                    assert named(name), (member, call_sig, body, name, reply.body)
                    assert reply.body and reply.body[0], f"{name} without a message"
                    outcomes[(member, name.rsplit(".", 1)[1])] += 1
                else:
                    outcomes[(member, "ok")] += 1
        finally:
            bus.disconnect()
        return manager_methods

    manager_methods = asyncio.run(fuzz())

    assert d.process is not None and d.process.poll() is None, "the daemon died"
    assert d.ctl("status").returncode == 0
    after = snapshot(*watched, skip=own)
    # A linked add writes the config.yaml its options give into the folder it links:
    # what --link is for.
    linked = {f"{p}/config.yaml" for p in paths}
    assert [p for p in changed(before, after) if p not in linked] == []
    by_method = collections.Counter()
    for (member, _), n in outcomes.items():
        by_method[member] += n
    assert sum(outcomes.values()) == DBUS_CALLS
    assert set(by_method) >= set(manager_methods), "a method was never called"
    refused = sum(n for (_, o), n in outcomes.items() if o != "ok")
    record("hostile input", "D-Bus calls, every Manager method and Properties, random "
           "and wrong-typed arguments", DBUS_CALLS,
           f"0 crashes, 0 unnamed errors; {refused} refused by name "
           f"({', '.join(sorted({o for _, o in outcomes if o != 'ok'}))}), "
           f"{DBUS_CALLS - refused} answered; nothing written outside state/runtime",
           current_test(), seed=hostile.SEED)


# --- configurations and OS specs -------------------------------------------------------

def default_config() -> dict:
    text = (Path(__file__).resolve().parents[2] / "data" / "boottorrent.yaml").read_text()
    return yaml.safe_load(text)


def mutate(r, data: Any, depth: int = 0) -> Any:
    """`data` with some of its values replaced by hostile ones, or keys added."""
    if isinstance(data, dict):
        out = {k: (mutate(r, v, depth + 1) if r.random() < 0.3 else v)
               for k, v in data.items()}
        if r.random() < 0.1:
            out[hostile.text(r)] = hostile.scalar(r)
        return out
    return hostile.scalar(r) if r.random() < 0.5 else data


def hostile_file(r, data: Any) -> bytes:
    text = yaml.safe_dump(data, allow_unicode=True).encode()
    roll = r.random()
    if roll < 0.1:
        cut = r.randrange(len(text) + 1)
        return text[:cut] + bytes([r.randrange(128, 256)]) + text[cut:]  # not UTF-8
    if roll < 0.15:
        return text[: r.randrange(len(text) + 1)]  # torn
    if roll < 0.2:
        return b"\xff\xfe" + text  # a BOM-ish start
    return text


def test_1000_malformed_configurations_are_each_loaded_or_refused_by_name(tmp_path: Path):
    r = hostile.rng("config")
    base = default_config()
    path = tmp_path / "boottorrent.yaml"
    outcomes = collections.Counter()
    for _ in range(CONFIGS):
        path.write_bytes(hostile_file(r, mutate(r, base)))
        try:
            load_config(path)
        except BootTorrentError as e:
            assert str(e), "a refusal without a message"
            outcomes[type(e).__name__] += 1
        else:
            outcomes["loaded"] += 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boottorrent.yaml"]
    record("hostile input", "configuration files: wrong types, huge values, ../ and "
           "absolute paths, torn, non-UTF-8", CONFIGS,
           f"0 crashes; {dict(sorted(outcomes.items()))}", current_test(), seed=hostile.SEED)


def test_1000_malformed_os_specs_are_each_read_or_refused_by_name(tmp_path: Path):
    r = hostile.rng("osspec")
    folder = make_os(tmp_path / "os")
    (folder / "out").symlink_to("/etc/passwd")
    (folder / "up").symlink_to("..")
    outside = tmp_path / "outside"
    outside.write_text("secret\n")
    keys = sorted({k for m in METHODS for k in method_keys(m)} | {"dispname", "method"})
    outcomes = collections.Counter()
    for i in range(OS_SPECS):
        data: Any = {"method": r.choice([*METHODS, *(hostile.text(r) for _ in range(1))])}
        for key in r.sample(keys, r.randint(0, 4)):
            data[key] = r.choice(["out", "up", "up/outside", "../outside", str(outside),
                                  "vmlinuz", "./vmlinuz", "vmlinuz/", *hostile.NASTY_STRINGS[:20]]
                                 ) if r.random() < 0.6 else hostile.scalar(r)
        if r.random() < 0.05:
            data = hostile.scalar(r)
        try:
            if i % 4 == 0:  # through the file, bytes and all
                (folder / "config.yaml").write_bytes(hostile_file(r, data))
                load_os_config(folder, default_dispname="os")
            else:
                parse_os_config(data, folder, default_dispname="os")
        except BootTorrentError as e:
            assert str(e), "a refusal without a message"
            outcomes[type(e).__name__] += 1
        else:
            outcomes["read"] += 1
    record("hostile input", "OS specs (config.yaml): wrong types, ../, absolute paths, "
           "symlinks out of the folder, non-UTF-8", OS_SPECS,
           f"0 crashes; {dict(sorted(outcomes.items()))}", current_test(), seed=hostile.SEED)



# --- the boot HTTP server -------------------------------------------------------------

HTTP_REQUESTS = hostile.count(10_000)
HTTP_METHODS = ["GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
                "PATCH", "TRACE", "CONNECT", "BREW"]
HTTP_PATHS = ["/boot.ipxe", "/boot/{mac}.ipxe", "/uefi/{s}", "/phase1/{s}",
              "/torrents/{s}.torrent", "/os/{s}/boot.json", "/os/{s}/boot.env",
              "/api/v1/clients/{mac}/events", "/{s}", "/{s}/{s}", "/../../{s}"]


def http_path(r) -> str:
    macs = ["52:54:00:12:34:56", "52-54-00-12-34-56", "FF:FF:FF:FF:FF:FF", "x", "",
            "52:54:00:12:34:5g", "%2e%2e", "52%3A54%3A00%3A12%3A34%3A56"]
    files = ["vmlinuz", "initrd.img", "debian12", "freedos", "..", "%2e%2e%2fetc%2fpasswd",
             "snponly.efi", "shimx64.efi", "grubx64.efi", "%00", "a%2fb", "."]
    parts = re.split(r"(\{mac\}|\{s\})", r.choice(HTTP_PATHS))
    path = "".join(r.choice(macs) if part == "{mac}" else
                   (r.choice(files) if r.random() < 0.6 else hostile.text(r)) if part == "{s}"
                   else part for part in parts)
    path = "".join(c if 0x21 <= ord(c) < 0x7f else f"%{ord(c) & 0xff:02X}" for c in path)
    if r.random() < 0.2:
        path += "?" + r.choice(["mac=52:54:00:12:34:56", "mac=../../x", "a=" + "b" * 5000,
                                "mac", "&&&", "mac=%ff"])
    return path if path.startswith("/") else "/" + path


def http_body(r) -> tuple[bytes, dict[str, str]]:
    roll = r.random()
    if roll < 0.4:
        report = {k: hostile.scalar(r) for k in r.sample(
            ["stage", "progress", "downloaded_bytes", "uploaded_bytes", "down_rate", "up_rate",
             "peers", "os", "error", "hostname", "ip", "mac", "x"], r.randint(0, 4))}
        return json.dumps(report, allow_nan=True).encode(), {
            "Content-Type": "application/json"}
    if roll < 0.6:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 300))), {
            "Content-Type": r.choice(["application/json", "text/plain", "", "a/b; c=d"])}
    if roll < 0.65:
        return b"[" * 100_000, {"Content-Type": "application/json"}
    if roll < 0.7:
        return b"x" * 200_000, {"Content-Type": "application/json"}
    return b"", {}


def http_headers(r) -> dict[str, str]:
    headers = {}
    for _ in range(r.randint(0, 3)):
        name = r.choice(["Range", "If-Modified-Since", "Accept-Encoding", "Host", "X-Forwarded-For",
                         "Cookie", "Transfer-Encoding-X", "User-Agent"])
        headers[name] = r.choice(["bytes=0-", "bytes=-1", "bytes=99999999999-", "bytes=5-1",
                                  "garbage", "A" * 8000, "gzip, br", "1.2.3.4", "é"])
    return headers


def test_10000_hostile_http_requests_get_a_4xx_or_an_answer_never_a_5xx(tmp_path: Path):
    from tests.integration.test_httpserver import boot_server, build_phase1

    r = hostile.rng("http")
    statuses: collections.Counter[int] = collections.Counter()
    crashed: list[str] = []

    async def fuzz() -> None:
        async with boot_server(tmp_path) as env:
            build_phase1(env)
            before = snapshot(tmp_path, skip=(tmp_path / "clients.json",))
            timeout = aiohttp.ClientTimeout(total=30)
            # A connection each, as the clients (iPXE, curl, wget) use the server.
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            for _ in range(HTTP_REQUESTS):
                method, path = r.choice(HTTP_METHODS), http_path(r)
                body, headers = http_body(r) if method != "GET" or r.random() < 0.1 \
                    else (b"", {})
                if method in ("CONNECT", "TRACE"):
                    # No body: aiohttp 3.8's parser frames none for these (a tunnel, a
                    # loop-back) and reads the bytes as the next request or waits.
                    body = b""
                headers.update(http_headers(r))
                try:
                    async with http.request(method, env.url(path), data=body,
                                                headers=headers, timeout=timeout,
                                                allow_redirects=False) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                        if resp.status >= 500:
                            crashed.append(f"{method} {path} {str(headers)[:300]} "
                                           f"{body[:200]!r} -> {resp.status}")
                except aiohttp.ServerDisconnectedError as e:
                    raise AssertionError(f"{method} {path} {str(headers)[:300]} "
                                         f"{body[:100]!r}: connection closed") from e
                except TimeoutError as e:
                    raise AssertionError(f"{method} {path} {str(headers)[:300]} "
                                         f"{body[:100]!r}: no answer in 30 s") from e
                except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as e:
                    # A request the server refused at the protocol level (a header too
                    # big): it answered 400 and closed.
                    statuses[getattr(e, "status", 400) or 400] += 1
            await http.close()
            # Still serving, and nothing written but the registry's own state file.
            status, _, _ = await env.get("/boot.ipxe")
            assert status == 200
            assert changed(before, snapshot(tmp_path, skip=(tmp_path / "clients.json",))) == []

    asyncio.run(fuzz())
    assert crashed == []
    assert sum(statuses.values()) == HTTP_REQUESTS
    record("hostile input", "HTTP requests at the boot server: methods, paths (traversal, "
           "encodings), headers, bodies, reports, MACs", HTTP_REQUESTS,
           f"0 x 5xx; by status {dict(sorted(statuses.items()))}; still serving, "
           "nothing written",
           current_test(), seed=hostile.SEED)
