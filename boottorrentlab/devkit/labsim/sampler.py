"""The bus as a desktop tool sees it during a run: property reads timed every `interval`
seconds, PropertiesChanged signals counted by the second, the Client objects at the end."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from boottorrentd import api
from boottorrentd.bus.backend import Message, MessageBus, MessageType


class BusSampler:
    """Reads properties over D-Bus every `interval` seconds and counts PropertiesChanged.

    It runs in a process of its own (sample_bus): in the simulator's, busy with hundreds of
    machines, it would measure its own event loop's delays instead of the daemon's."""

    def __init__(self, address: str, interval: float = 0.1) -> None:
        self.address = address
        self.interval = interval
        self.latencies: list[float] = []
        self.signals_by_second: dict[int, int] = {}
        self.client_path = ""  # the first client the daemon announces, read as well
        self.bus: MessageBus | None = None

    async def connect(self, *, listen: bool = False) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()
        if not listen:
            return
        for interface, member in (("org.freedesktop.DBus.Properties", "PropertiesChanged"),
                                  ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded")):
            await self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                body=[f"type='signal',sender='{api.BUS_NAME}',interface='{interface}',"
                      f"member='{member}'"]))
        self.bus.add_message_handler(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "PropertiesChanged":
            second = int(time.monotonic())
            self.signals_by_second[second] = self.signals_by_second.get(second, 0) + 1
        elif msg.member == "InterfacesAdded" and api.CLIENT_IFACE in msg.body[1]:
            self.client_path = self.client_path or msg.body[0]

    async def get_all(self, path: str, interface: str) -> dict[str, Any]:
        assert self.bus is not None
        reply = await self.bus.call(Message(
            destination=api.BUS_NAME, path=path, interface="org.freedesktop.DBus.Properties",
            member="GetAll", signature="s", body=[interface]))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"GetAll {path}: {reply.error_name} {reply.body}")
        return {k: v.value for k, v in reply.body[0].items()}

    async def managed_clients(self) -> dict[str, dict[str, Any]]:
        """Every Client object's properties, by MAC."""
        assert self.bus is not None
        reply = await self.bus.call(Message(
            destination=api.BUS_NAME, path=api.MANAGER_PATH,
            interface="org.freedesktop.DBus.ObjectManager", member="GetManagedObjects"))
        out = {}
        for ifaces in reply.body[0].values():
            if api.CLIENT_IFACE in ifaces:
                props = {k: v.value for k, v in ifaces[api.CLIENT_IFACE].items()}
                out[props["MAC"]] = props
        return out

    async def sample(self, stop: Callable[[], bool]) -> None:
        while not stop():
            for path, iface in ((api.MANAGER_PATH, api.MANAGER_IFACE),
                                (self.client_path, api.CLIENT_IFACE)):
                if not path:
                    continue
                started = time.perf_counter()
                try:
                    await self.get_all(path, iface)
                except Exception:
                    return  # the daemon was stopped (a server-failure run)
                self.latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(self.interval)

    def disconnect(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()


def sample_bus(address: str, interval: float, stop: Any, out: Any) -> None:
    """A sampler process: "ready" on `out` once listening, then (latencies, signals by
    second) once `stop` (a multiprocessing Event) is set."""

    async def main() -> BusSampler:
        sampler = BusSampler(address, interval)
        await sampler.connect(listen=True)
        out.put("ready")
        await sampler.sample(stop.is_set)
        # Signals still count until the end of the run.
        while not stop.is_set():
            await asyncio.sleep(0.2)
        sampler.disconnect()
        return sampler

    sampler = asyncio.run(main())
    out.put((sampler.latencies, sampler.signals_by_second))



class SamplerProcess:
    """sample_bus in a process of its own: `start()` returns once it listens, `stop()`
    returns what it measured (latencies in ms, PropertiesChanged signals by second)."""

    def __init__(self, address: str, interval: float) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._stop, self._out = spawn.Event(), spawn.Queue()
        self._process = spawn.Process(target=sample_bus,
                                      args=(address, interval, self._stop, self._out),
                                      daemon=True)

    async def start(self) -> None:
        self._process.start()
        ready = await asyncio.to_thread(self._out.get, timeout=60)
        assert ready == "ready", ready

    async def stop(self) -> tuple[list[float], dict[int, int]]:
        self._stop.set()
        measured = await asyncio.to_thread(self._out.get, timeout=60)
        await asyncio.to_thread(self._process.join, 10)
        return measured


async def client_objects(address: str) -> dict[str, dict[str, Any]]:
    """Every Client object's properties, by MAC, read once."""
    reader = BusSampler(address)
    await reader.connect()
    try:
        return await reader.managed_clients()
    finally:
        reader.disconnect()
