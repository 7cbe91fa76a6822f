"""The client registry: every machine seen on the boot network, keyed by MAC.

Three sources feed it: DHCP leases (`lease`), the boot HTTP server (`http_seen`) and the
machines' own progress reports (`report`). Listeners learn about new machines through
`on_new` and about changes through `on_change`, with the names of the changed fields, so
the D-Bus layer can emit PropertiesChanged without diffing.

Assignments (MAC -> OS) and the machines whose disks were imaged (MAC -> OS written) are
the only state that outlives the daemon: they are kept in a small JSON file, written
atomically. An imaged machine boots from its disk until it is assigned (or unassigned)
again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from boottorrentd.names import NAME_RE
from boottorrentd.util.fs import read_state, write_atomic
from boottorrentd.util.mac import normalize_mac

log = logging.getLogger(__name__)


class Stage(StrEnum):
    """Where a machine is in its boot, in order; D-Bus and the reports use these values."""

    DHCP = "dhcp"
    MENU = "menu"
    PHASE1 = "phase1"
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    VERIFYING = "verifying"  # reading the OS back: the download, or the disk written
    WRITING = "writing"  # an image onto the disk
    RUNNING = "running"  # the OS in a virtual machine on the client
    BOOTING = "booting"
    BOOTED = "booted"
    FAILED = "failed"


STAGES = tuple(Stage)
# A lease after one of these starts a new boot; before them it is part of the current one
# (phase-1 and the booted OS do DHCP too).
FINISHED = (Stage.BOOTED, Stage.FAILED)


class Asker(StrEnum):
    """Who asked for a DHCP lease, as far as the request tells."""

    FIRMWARE = "firmware"  # a PXE ROM, iPXE or UEFI HTTP Boot: a boot starts
    PHASE1 = "phase1"  # phase-1's own DHCP client, during the boot
    SYSTEM = "system"  # anything else: the machine's own OS, up far enough to run its network
    UNKNOWN = "unknown"  # the event has no request data (a renewal, dnsmasq's replay)


LEASE_ACTIONS = ("add", "old", "del")

MAX_ERROR = 500
# Counters go out over D-Bus as 64-bit integers.
MAX_COUNT = 2**63 - 1

STATE_VERSION = 1

_INT_KEYS = ("downloaded_bytes", "uploaded_bytes", "down_rate", "up_rate", "peers")
REPORT_KEYS = ("stage", "progress", *_INT_KEYS, "os", "error", "imaged")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Fields of one boot attempt: cleared when the machine starts booting again, so that the
# last attempt's 100 % or error does not show on the new one.
_PER_BOOT = {
    "os": "",
    "progress": 0.0,
    "downloaded_bytes": 0,
    "uploaded_bytes": 0,
    "down_rate": 0,
    "up_rate": 0,
    "peers": 0,
    "error": "",
}


@dataclass
class Client:
    mac: str
    ip: str = ""
    hostname: str = ""
    os: str = ""
    stage: Stage | Literal[""] = ""  # "": seen, but no stage known yet
    progress: float = 0.0
    downloaded_bytes: int = 0
    uploaded_bytes: int = 0
    down_rate: int = 0
    up_rate: int = 0
    peers: int = 0
    last_seen: float = 0.0
    error: str = ""
    assigned_os: str = ""
    imaged_os: str = ""  # the OS written to its disk, which it boots from now


    def to_dict(self) -> dict:
        return asdict(self)


ChangeListener = Callable[[Client, set[str]], None]
NewListener = Callable[[Client], None]


class Registry:
    """Clients by MAC (normalize_mac form), and the persistent MAC -> OS assignments.

    All methods are synchronous and meant for the event loop's thread. Saving the
    assignments runs in a worker thread when a loop is running (the fsync may take a
    while); `flush()` waits for it.
    """

    def __init__(self, state_file: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.state_file = Path(state_file)
        self.clients: dict[str, Client] = {}
        self.on_change: list[ChangeListener] = []
        self.on_new: list[NewListener] = []
        # Told after every change of the assignments, known machine or not.
        self.on_assignments: list[Callable[[], None]] = []
        self._clock = clock
        self._assignments, self._imaged = self._load()
        self._write_lock = threading.Lock()
        self._version = 0
        self._written = 0
        self._pending: set[asyncio.Future] = set()
        # Who holds each address, as our DHCP leases say: a report must come from the
        # machine it is about.
        self._leased: dict[str, str] = {}

    # --- queries -------------------------------------------------------------------------

    @property
    def assignments(self) -> dict[str, str]:
        return dict(self._assignments)

    @property
    def imaged(self) -> dict[str, str]:
        """MAC -> the OS image written to that machine's disk, which it boots from now."""
        return dict(self._imaged)

    def get(self, mac: str) -> Client | None:
        return self.clients.get(normalize_mac(mac))

    def mac_for_ip(self, ip: str) -> str | None:
        """The MAC of the machine last seen at `ip`, if any."""
        if not ip:
            return None
        found = [c for c in self.clients.values() if c.ip == ip]
        if not found:
            return None
        return max(found, key=lambda c: c.last_seen).mac

    # --- events --------------------------------------------------------------------------

    def lease(
        self, action: str, mac: str, ip: str, hostname: str | None, *,
        asker: Asker = Asker.UNKNOWN,
    ) -> None:
        """A DHCP lease event (dnsmasq's add, old, del), asked for by `asker`.

        add/old: records the address; a machine not yet booting is at stage "dhcp", and
        so is one done with its last boot when its firmware asks (a firmware always asks
        afresh, and dnsmasq passes a fresh request's data; what comes without it is a
        renewal, a name taken by another lease or dnsmasq's replay at start, and a booted
        OS doing these is no new boot). A lease in the middle of a boot (phase-1's own DHCP)
        leaves the stage alone, but for the machine's own OS asking while the machine is
        "booting": the OS is up and runs its network, the machine is "booted" (an OS that
        phase-1 kexec'd knows nothing of the server and reports nothing itself).
        del: keeps the machine, forgets its address.
        """
        if action not in LEASE_ACTIONS:
            raise ValueError(
                f"unknown lease action {action!r}; expected one of {', '.join(LEASE_ACTIONS)}"
            )
        mac = normalize_mac(mac)
        if action == "del":
            if self._leased.get(ip) == mac:
                del self._leased[ip]
            client = self.clients.get(mac)
            if client is not None and client.ip == ip:
                # A del for an address the machine no longer has must not erase its new one.
                self._apply(client, {"ip": ""}, new=False)
            return
        client, new = self._client(mac)
        changes: dict[str, object] = {"last_seen": self._clock()}
        if ip:
            changes["ip"] = ip
            self._leased[ip] = mac
        if hostname:
            changes["hostname"] = hostname
        if client.stage in ("", Stage.DHCP):
            changes["stage"] = Stage.DHCP
        elif client.stage in FINISHED and asker == Asker.FIRMWARE:
            changes.update(_PER_BOOT, stage=Stage.DHCP)
        elif client.stage == Stage.BOOTING and asker == Asker.SYSTEM:
            changes["stage"] = Stage.BOOTED
        self._apply(client, changes, new=new)

    def http_seen(self, mac: str, ip: str, stage: Stage) -> None:
        """The boot server served the machine: its boot script (MENU) or the phase-1
        kernel (PHASE1)."""
        if stage not in (Stage.MENU, Stage.PHASE1):
            raise ValueError(f"http_seen takes stage 'menu' or 'phase1', not {stage!r}")
        client, new = self._client(normalize_mac(mac))
        changes: dict[str, object] = {"last_seen": self._clock(), "stage": Stage(stage)}
        if ip:
            changes["ip"] = ip
        if stage == Stage.MENU:
            # iPXE fetches the boot script once per network boot: a new attempt.
            changes.update(_PER_BOOT)
        self._apply(client, changes, new=new)

    def report(self, mac: str, payload: object, *, ip: str = "") -> Client:
        """Apply a progress report from the machine `mac`; its updated Client.

        ValueError (naming the field) if the MAC or the report is invalid, PermissionError
        if `ip` is leased to another machine; nothing is changed then.
        """
        mac = normalize_mac(mac)
        holder = self._leased.get(ip)
        if holder is not None and holder != mac:
            # Without a lease of ours for the address (proxyDHCP, a static address) there
            # is nothing to check against.
            raise PermissionError(f"a report on {mac} from {ip}, which our DHCP leased to "
                                  f"{holder}: a machine reports on its own MAC only")
        changes = validate_report(payload)
        changes["last_seen"] = self._clock()
        if ip:
            changes["ip"] = ip
        client, new = self._client(mac)
        if changes.pop("imaged", False):
            imaged = str(changes.get("os") or client.os)
            if not imaged:
                raise ValueError("imaged: the report names no os, and the machine has none")
            changes["imaged_os"] = imaged
            self._imaged[mac] = imaged
            self._save()
            self._assignments_changed()
        self._apply(client, changes, new=new)
        return client

    # --- assignments ---------------------------------------------------------------------

    def assign(self, mac: str, os: str) -> None:
        """Boot the machine `mac` straight into `os` from now on (saved across restarts)."""
        mac = normalize_mac(mac)
        if not isinstance(os, str) or not NAME_RE.fullmatch(os):
            raise ValueError(f"{os!r} is not an OS name (a-z, 0-9, '.', '_', '-'; e.g. debian12)")
        # Assigning again, even the same OS, is how an operator re-images a machine.
        if self._assignments.get(mac) == os and mac not in self._imaged:
            return
        self._assignments[mac] = os
        self._imaged.pop(mac, None)
        self._save()
        if mac in self.clients:
            self._apply(self.clients[mac], {"assigned_os": os, "imaged_os": ""}, new=False)
        self._assignments_changed()

    def unassign(self, mac: str) -> None:
        """Give the machine `mac` the menu again; nothing happens if it had no assignment."""
        mac = normalize_mac(mac)
        had = self._assignments.pop(mac, None)
        if had is None and self._imaged.pop(mac, None) is None:
            return
        self._imaged.pop(mac, None)
        self._save()
        if mac in self.clients:
            self._apply(self.clients[mac], {"assigned_os": "", "imaged_os": ""}, new=False)
        self._assignments_changed()

    async def flush(self) -> None:
        """Wait until the assignments are on disk; OSError if the last save failed."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._written < self._version:
            raise OSError(f"could not save the client assignments to {self.state_file}; "
                          "the log says why")

    # --- internals -----------------------------------------------------------------------

    def _assignments_changed(self) -> None:
        for listener in list(self.on_assignments):
            listener()

    def _client(self, mac: str) -> tuple[Client, bool]:
        client = self.clients.get(mac)
        if client is not None:
            return client, False
        return Client(mac, assigned_os=self._assignments.get(mac, ""),
                      imaged_os=self._imaged.get(mac, "")), True

    def _apply(self, client: Client, changes: dict[str, object], *, new: bool) -> None:
        changed = set()
        for name, value in changes.items():
            if getattr(client, name) != value:
                setattr(client, name, value)
                changed.add(name)
        if new:
            self.clients[client.mac] = client
            for listener in list(self.on_new):
                _call(listener, client)
        elif changed - {"last_seen"}:
            # last_seen moves with every report; alone it is not news to anyone.
            for on_change in list(self.on_change):
                _call(on_change, client, changed)

    def _load(self) -> tuple[dict[str, str], dict[str, str]]:
        data = read_state(self.state_file, _parse_state)
        if data is None:
            return {}, {}
        raw, imaged = data
        return self._mapping(raw, "assignment"), self._mapping(imaged, "image")

    def _mapping(self, raw: dict, what: str) -> dict[str, str]:
        """The valid MAC -> OS name pairs of `raw`; the others are logged and dropped."""
        mapping = {}
        for mac, name in raw.items():
            try:
                mac = normalize_mac(mac)
            except ValueError:
                log.warning("%s: ignoring the %s of %r: not a MAC address",
                            self.state_file, what, mac)
                continue
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                log.warning("%s: ignoring the %s of %s to %r: not an OS name",
                            self.state_file, what, mac, name)
                continue
            mapping[mac] = name
        return mapping

    def _save(self) -> None:
        self._version += 1
        snapshot = (self._version, dict(self._assignments), dict(self._imaged))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(snapshot)
            return
        future = loop.run_in_executor(None, self._write, snapshot)
        self._pending.add(future)
        future.add_done_callback(self._saved)

    def _saved(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("could not save the client assignments to %s: %s",
                      self.state_file, future.exception())

    def _write(self, snapshot: tuple[int, dict[str, str], dict[str, str]]) -> None:
        version, assignments, imaged = snapshot
        with self._write_lock:
            # Saves may finish out of order; an older snapshot must not replace a newer one.
            if version <= self._written:
                return
            data = {"version": STATE_VERSION, "assignments": dict(sorted(assignments.items())),
                    "imaged": dict(sorted(imaged.items()))}
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.state_file, json.dumps(data, indent=2) + "\n")
            self._written = version


def _parse_state(raw: bytes) -> tuple[dict, dict]:
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("assignments"), dict):
        raise TypeError("it holds no assignments object")
    # Files from before imaging have no "imaged".
    imaged = data.get("imaged", {})
    if not isinstance(imaged, dict):
        raise TypeError("its imaged entry is not an object")
    return data["assignments"], imaged


def _call(listener: Callable[..., None], *args: object) -> None:
    # One broken listener must not lose the update for the others, nor fail the request
    # that brought it.
    try:
        listener(*args)
    except Exception:
        log.exception("client listener %r failed", listener)


def validate_report(payload: object) -> dict[str, object]:
    """The Client fields a progress report sets; ValueError naming the bad field."""
    if not isinstance(payload, dict):
        raise ValueError(f"a report is a JSON object, got {_kind(payload)}")
    unknown = sorted(str(key) for key in payload if key not in REPORT_KEYS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; a report may hold "
                         f"{', '.join(REPORT_KEYS)}")
    changes: dict[str, object] = {}
    if "stage" in payload:
        stage = payload["stage"]
        if not isinstance(stage, str) or stage not in STAGES:
            raise ValueError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")
        changes["stage"] = Stage(stage)
    if "progress" in payload:
        progress = payload["progress"]
        if (isinstance(progress, bool) or not isinstance(progress, int | float)
                or not math.isfinite(progress) or not 0 <= progress <= 1):
            raise ValueError(f"progress: expected a number from 0 to 1, got {progress!r}")
        changes["progress"] = float(progress)
    for key in _INT_KEYS:
        if key in payload:
            value = payload[key]
            if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= MAX_COUNT
            ):
                raise ValueError(f"{key}: expected a whole number >= 0, got {value!r}")
            changes[key] = value
    if "os" in payload:
        name = payload["os"]
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ValueError(f"os: {name!r} is not an OS name (a-z, 0-9, '.', '_', '-')")
        changes["os"] = name
    if "error" in payload:
        error = payload["error"]
        if not isinstance(error, str):
            raise ValueError(f"error: expected a string, got {_kind(error)}")
        if len(error) > MAX_ERROR:
            raise ValueError(f"error: longer than {MAX_ERROR} characters ({len(error)})")
        # Shown in terminals and the journal: no escape sequences or line breaks.
        changes["error"] = " ".join(_CONTROL.sub(" ", error).split())
    if "imaged" in payload:
        if not isinstance(payload["imaged"], bool):
            raise ValueError(f"imaged: expected true or false, got {_kind(payload['imaged'])}")
        changes["imaged"] = payload["imaged"]
    if changes.get("stage") == Stage.FAILED and not changes.get("error"):
        raise ValueError("error: stage 'failed' needs an error saying what went wrong")
    return changes


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)

