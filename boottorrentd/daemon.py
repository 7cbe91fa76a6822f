"""boottorrentd: the daemon's entry point (options, bus name, lifecycle)."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from boottorrentd import __version__, api
from boottorrentd.bus import auth
from boottorrentd.bus.backend import (
    BACKEND,
    BusType,
    DBusError,
    Message,
    MessageBus,
    NameFlag,
    RequestNameReply,
)
from boottorrentd.bus.service import ManagerInterface
from boottorrentd.config import default_config_text, load_config
from boottorrentd.errors import BootTorrentError
from boottorrentd.manager import Manager
from boottorrentd.util.log import setup_logging

log = logging.getLogger("boottorrentd")


def _default(env: str, fallback: str, leaf: str = "") -> Path:
    # systemd sets these from ConfigurationDirectory=/StateDirectory=/RuntimeDirectory=.
    base = os.environ.get(env)
    if base:
        # A colon-separated list when the unit names several directories: ours is first.
        return Path(base.split(":")[0]) / leaf if leaf else Path(base.split(":")[0])
    return Path(fallback)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boottorrentd",
        description="The BootTorrent daemon: owns org.boottorrent1 on the system bus and "
        "keeps the library of operating systems that clients boot over BitTorrent. "
        "Control it with boottorrentctl.",
    )
    p.add_argument("--config", type=Path,
                   default=_default("CONFIGURATION_DIRECTORY", "/etc/boottorrent/boottorrent.yaml",
                                    "boottorrent.yaml"),
                   help="configuration file (default: $CONFIGURATION_DIRECTORY/boottorrent.yaml, "
                   "else /etc/boottorrent/boottorrent.yaml)")
    p.add_argument("--state-dir", type=Path,
                   default=_default("STATE_DIRECTORY", "/var/lib/boottorrent"),
                   help="where the OS library and torrents live (default: $STATE_DIRECTORY, "
                   "else /var/lib/boottorrent)")
    p.add_argument("--runtime-dir", type=Path,
                   default=_default("RUNTIME_DIRECTORY", "/run/boottorrent"),
                   help="where generated files and sockets live (default: $RUNTIME_DIRECTORY, "
                   "else /run/boottorrent)")
    p.add_argument("--print-default-config", action="store_true",
                   help="print the commented default configuration and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def notify(*states: str) -> None:
    """sd_notify(3), by its datagram protocol: the daemon needs no systemd bindings for it.
    A no-op when not started by systemd (no NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError as e:
        # The service manager may be gone (shutdown) or the socket stale; never fatal.
        log.debug("sd_notify failed: %s", e)


async def serve(args: argparse.Namespace) -> int:
    config = await asyncio.to_thread(load_config, args.config)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.runtime_dir.mkdir(parents=True, exist_ok=True)
    manager = Manager(config, args.config, args.state_dir, args.runtime_dir)
    await asyncio.to_thread(manager.load)

    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except Exception as e:
        address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
        raise BootTorrentError(f"cannot connect to the system bus at {address}: {e}; "
                               "is dbus running?") from e
    auth.track_callers(bus)
    service = ManagerInterface(bus, manager)
    bus.export(api.MANAGER_PATH, service)
    try:
        reply = await bus.request_name(api.BUS_NAME, NameFlag.DO_NOT_QUEUE)
    except DBusError as e:
        raise BootTorrentError(
            f"not allowed to own {api.BUS_NAME} ({e.text}); run boottorrentd as root: the bus "
            "policy /usr/share/dbus-1/system.d/org.boottorrent1.conf allows only root"
        ) from e
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise BootTorrentError(
            f"{api.BUS_NAME} is already owned by another process (is boottorrentd already "
            "running? 'systemctl status boottorrentd'); stop it first"
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    disconnected = asyncio.ensure_future(bus.wait_for_disconnect())
    status = _status(manager)
    log.info("ready on %s (%s, version %s); %s", api.BUS_NAME, BACKEND, __version__, status)
    notify("READY=1", f"STATUS={status}")

    watchdog = _start_watchdog()
    restoring = asyncio.create_task(manager.restore_session())
    manager.on_state_change.append(lambda: notify(f"STATUS={_status(manager)}"))
    reloads: set[asyncio.Task] = set()

    def reload_on_signal() -> None:
        task = asyncio.create_task(_reload(manager))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)

    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, disconnected], return_when=asyncio.FIRST_COMPLETED)
    notify("STOPPING=1", "STATUS=Shutting down")
    log.info("shutting down")
    if watchdog is not None:
        watchdog.cancel()
    await restoring
    loop.remove_signal_handler(signal.SIGHUP)
    await asyncio.gather(*reloads)
    # Keep the session remembered: the next start of the daemon brings it back.
    await manager.stop_session(forget=False)
    if disconnected.done():
        log.error("lost the connection to the system bus; exiting")
        return 1
    service.close()
    # Disconnecting drops what is not written yet; the bus answers a call only after
    # everything sent before it (a bus that does not answer gets no more of our time).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await bus.call(Message(destination="org.freedesktop.DBus",
                                   path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="GetId"))
    bus.disconnect()
    return 0


async def _reload(manager: Manager) -> None:
    """SIGHUP: read the configuration again, by systemd's Type=notify-reload protocol
    (RELOADING=1 with the monotonic time, then READY=1). A refused file leaves everything
    as it was; the journal and the unit's status line say why."""
    notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
           "STATUS=Reloading the configuration")
    try:
        await manager.reload()
    except BootTorrentError as e:
        log.error("reload refused, the configuration in use is unchanged: %s", e)
        notify("READY=1", f"STATUS=Reload refused: {e}")
        return
    except Exception as e:
        # systemd waits for READY=1 after RELOADING=1 whatever happened.
        log.exception("reload failed")
        notify("READY=1", f"STATUS=Reload failed: {e}")
        return
    notify("READY=1", f"STATUS={_status(manager)}")


def _start_watchdog() -> asyncio.Task | None:
    """Ping systemd's watchdog at half its period while the event loop turns: a loop
    blocked for longer gets the daemon restarted (WatchdogSec= in the unit)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    interval = int(usec) / 1_000_000 / 2

    async def ping() -> None:
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    return asyncio.create_task(ping(), name="watchdog")


def _status(manager: Manager) -> str:
    reason = f": {manager.state_reason}" if manager.state_reason else ""
    if manager.state in ("running", "degraded"):
        cfg = manager.config_in_use
        return (f"Session {manager.state} on {cfg.dnsmasq.interface} "
                f"({cfg.boot_network}){reason}; {len(manager.library.entries)} OS(es)")
    return f"Session {manager.state}{reason}; {len(manager.library.entries)} OS(es)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_default_config:
        sys.stdout.write(default_config_text())
        return 0
    setup_logging(args.verbose)
    try:
        return asyncio.run(serve(args))
    except BootTorrentError as e:
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
