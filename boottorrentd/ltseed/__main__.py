"""boottorrentd-ltseed: seed the boot library with libtorrent, driven over a Unix socket.

    python3 -m boottorrentd.ltseed --control SOCKET --listen HOST:PORT
        [--upload-slots N] [--upload-limit-kbps N] [--local-discovery] [--no-peer-exchange]

The daemon starts it (session/children/libtorrent.py builds this command line) as its
supervised child "ltseed", as the unprivileged user. Log lines go to stderr, which the
supervisor sends to the journal. SIGTERM (or SIGINT) ends it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from boottorrentd.ltseed import protocol
from boottorrentd.ltseed.engine import Engine, Settings, lt_version

log = logging.getLogger("boottorrentd.ltseed")

# How often finished checks are looked at: a checked torrent starts within this.
POLL_S = 0.1


def parse_args(argv: list[str]) -> tuple[Path, Settings]:
    parser = argparse.ArgumentParser(prog="python3 -m boottorrentd.ltseed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=Path, required=True,
                        help="the Unix socket to listen on for the daemon's requests")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT",
                        help="the IPv4 address and port peers connect to")
    parser.add_argument("--upload-slots", type=int, default=14)
    parser.add_argument("--upload-limit-kbps", type=int, default=0, help="0: unlimited")
    parser.add_argument("--local-discovery", action=argparse.BooleanOptionalAction,
                        default=False)
    parser.add_argument("--peer-exchange", action=argparse.BooleanOptionalAction,
                        default=True)
    args = parser.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"--listen {args.listen}: give it as HOST:PORT, e.g. 192.168.1.1:51420")
    return args.control, Settings(
        host=host, port=int(port), upload_slots=args.upload_slots,
        upload_limit_kbps=args.upload_limit_kbps, local_discovery=args.local_discovery,
        peer_exchange=args.peer_exchange)


def answer(engine: Engine, message: dict) -> bytes:
    """The response to one request."""
    op = message.get("op")
    if op == protocol.PING:
        return protocol.success({"libtorrent": lt_version()})
    if op == protocol.SET_TORRENTS:
        engine.set_torrents(protocol.seeds_from(message.get("torrents")))
        return protocol.success()
    if op == protocol.STATS:
        return protocol.success(engine.stats())
    if op == protocol.HEALTH:
        return protocol.success({"problem": engine.listen_problem()})
    if op == protocol.REANNOUNCE:
        engine.reannounce()
        return protocol.success()
    return protocol.failure(f"unknown request {op!r}; this engine knows {', '.join(protocol.OPS)}")


async def serve_client(engine: Engine, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            try:
                reply = answer(engine, protocol.decode(line))
            except protocol.ProtocolError as e:
                reply = protocol.failure(f"bad request: {e}")
            except RuntimeError as e:  # libtorrent's errors, e.g. a torrent it cannot read
                reply = protocol.failure(str(e))
            writer.write(reply)
            await writer.drain()
    except (ConnectionError, ValueError) as e:  # ValueError: a line over the limit
        log.warning("control connection lost: %s", e)
    finally:
        writer.close()


async def run(control: Path, settings: Settings) -> None:
    engine = Engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A socket a killed engine left would make the bind fail.
    control.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(
        lambda r, w: serve_client(engine, r, w), path=control,
        limit=protocol.MAX_LINE_BYTES)
    # Only this user and its group may talk to the engine: the daemon is in the group
    # (it has no CAP_DAC_OVERRIDE), and the folder is the daemon's and the group's alone.
    os.chmod(control, 0o660)
    log.info("seeding on %s:%d, control socket %s", settings.host, settings.port, control)
    try:
        while not stop.is_set():
            engine.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
    finally:
        server.close()
        engine.close()
        control.unlink(missing_ok=True)
        log.info("stopped")


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname)s %(message)s")
    control, settings = parse_args(argv)
    asyncio.run(run(control, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
