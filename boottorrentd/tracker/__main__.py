"""boottorrentd-tracker: the boot swarm's HTTP tracker.

    python3 -m boottorrentd.tracker --listen HOST:PORT --whitelist FILE
        [--interval SECONDS] [--max-peers N] [--peer-ttl-intervals N]

The daemon starts it (session/children/tracker.py builds this command line) as its
supervised child "tracker", as the unprivileged user. It tracks the torrents whose hex
infohashes are the lines of FILE and reads FILE again on SIGHUP. Log lines go to stderr,
which the supervisor sends to the journal. SIGTERM (or SIGINT) ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from boottorrentd.tracker.server import MAX_REQUEST_BYTES, TrackerServer
from boottorrentd.tracker.swarm import MIN_PEER_TTL_S, Swarms, peer_ttl

log = logging.getLogger("boottorrentd.tracker")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m boottorrentd.tracker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT",
                        help="the IPv4 address and port to answer on")
    parser.add_argument("--whitelist", type=Path, required=True,
                        help="the tracked infohashes, one hex SHA-1 a line; reread on SIGHUP")
    parser.add_argument("--interval", type=int, default=15,
                        help="seconds between a client's announces (default 15)")
    parser.add_argument("--max-peers", type=int, default=200,
                        help="peers in one reply, whatever numwant a client sends but 0 "
                        "(default 200: a whole lab at once)")
    parser.add_argument("--peer-ttl-intervals", type=int, default=3,
                        help="a peer silent for this many intervals has left (default 3; "
                        f"never less than {MIN_PEER_TTL_S:.0f} s)")
    args = parser.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"--listen {args.listen}: give it as HOST:PORT, e.g. 192.168.1.1:10001")
    args.host, args.port = host, int(port)
    return args


def read_whitelist(path: Path) -> frozenset[bytes]:
    """The infohashes in `path`; a line that is not one is skipped with a warning."""
    hashes = set()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        log.warning("no whitelist %s: tracking nothing until it exists and SIGHUP", path)
        return frozenset()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = bytes.fromhex(text)
        except ValueError:
            value = b""
        if len(value) != 20:
            log.warning("%s:%d: %r is not a hex SHA-1 infohash; skipped", path, number, text)
            continue
        hashes.add(value)
    return frozenset(hashes)


async def run(args: argparse.Namespace) -> None:
    swarms = Swarms(max_peers=args.max_peers,
                    peer_ttl=peer_ttl(args.interval, args.peer_ttl_intervals))
    tracker = TrackerServer(swarms, args.interval)

    def reload() -> None:
        # Read at once in the signal's turn of the loop: the daemon asks the tracker about
        # a new torrent right after the signal, and the file is a few lines.
        swarms.allow(read_whitelist(args.whitelist))
        log.info("tracking %d torrent(s) from %s", len(swarms.allowed), args.whitelist)

    reload()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    server = await asyncio.start_server(tracker.handle, args.host, args.port,
                                        limit=MAX_REQUEST_BYTES, reuse_address=True)
    log.info("answering on http://%s:%d/announce: interval %d s, up to %d peers a reply",
             args.host, args.port, args.interval, args.max_peers)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        log.info("stopped")


def main(argv: list[str]) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname)s %(message)s")
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
