"""A static file server for the benchmark: GET /<prefix>/<path> from that prefix's folder.

The daemon's boot HTTP server (boottorrentd/boot/http.py) has no route for an OS's
payload files (it serves iPXE scripts, phase-1 files, torrents, boot specs), so the
unicast baseline fetches the payload from this server instead: the same aiohttp
FileResponse (sendfile, Range support) the daemon uses for its own files, run in the
server namespace on the daemon's address (host_ip) and a port of its own.

    python bench/fileserver.py HOST PORT PREFIX=FOLDER [PREFIX=FOLDER...]

e.g. `files=/var/lib/boottorrent/oss` serves /files/<os>/<file> from the library.

Prints "listening" on stdout once it accepts connections; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web


def make_app(roots: dict[str, Path]) -> web.Application:
    app = web.Application()

    def handler(root: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        root = root.resolve()

        async def serve(request: web.Request) -> web.StreamResponse:
            path = (root / request.match_info["path"]).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                raise web.HTTPNotFound(text=f"no file {request.match_info['path']!r}\n")
            return web.FileResponse(path)

        return serve

    for prefix, root in roots.items():
        app.router.add_get(f"/{prefix}/{{path:.+}}", handler(root))
    return app


async def serve_forever(roots: dict[str, Path], host: str, port: int) -> None:
    runner = web.AppRunner(make_app(roots), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print("listening", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not all("=" in a for a in argv[2:]):
        print(__doc__, file=sys.stderr)
        return 2
    roots = {prefix: Path(folder) for prefix, _, folder in (a.partition("=") for a in argv[2:])}
    asyncio.run(serve_forever(roots, argv[0], int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
