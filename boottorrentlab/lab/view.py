"""The lab's daemon seen over the bus: one connection, its event loop in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from boottorrentctl.bus import Client
from boottorrentctl.records import client_record, seed_records
from boottorrentd import api
from boottorrentd.bus.backend import MessageBus


class DaemonView:
    """One D-Bus connection to the lab's daemon, kept open for polling.

    A `boottorrentctl` process per poll costs ~0.25 s of CPU, which the QEMU machines
    (TCG, two cores) need more. The connection runs its own event loop in a thread so
    that the lab's code stays synchronous.
    """

    def __init__(self, address: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab-dbus",
                                        daemon=True)
        self._thread.start()
        self._client: Client = self._run(self._connect(address))

    async def _connect(self, address: str) -> Client:
        return Client(await MessageBus(bus_address=address).connect())

    def _run(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def clients(self) -> dict[str, dict[str, Any]]:
        """The daemon's client objects by MAC, as `boottorrentctl clients --json` shows."""
        objects = self._run(self._client.managed_objects())
        records = [client_record(ifaces[api.CLIENT_IFACE]) for ifaces in objects.values()
                   if api.CLIENT_IFACE in ifaces]
        return {r["mac"]: r for r in records}

    def manager(self) -> dict[str, Any]:
        return self._run(self._client.properties(api.MANAGER_PATH, api.MANAGER_IFACE))

    def seed_uploaded(self, os_name: str) -> int | None:
        """Bytes the server's seed uploaded of `os_name`, when the daemon reports it."""
        for seed in seed_records(self.manager()):
            if seed["name"] == os_name:
                return int(seed["uploaded_bytes"])
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.bus.disconnect()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
