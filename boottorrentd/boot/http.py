"""The boot HTTP server: iPXE scripts, phase-1 files, torrents, boot specs, reports.

Routes (every 4xx carries a reason a person can act on):

    GET  /boot.ipxe                    the same tiny script for every machine: chains to
    GET  /boot/{mac}.ipxe              the machine's own script (menu, direct boot, or why not)
    GET  /uefi/{loader}                UEFI HTTP Boot's loaders (shim and GRUB, or iPXE)
    GET  /grub/grub.cfg                GRUB's config, for GRUB started by UEFI HTTP Boot
    GET  /phase1/{vmlinuz,initrd.img}  the phase-1 image, from phase1_dir
    GET  /torrents/{name}.torrent      an OS's torrent
    GET  /os/{name}/boot.json          what phase-1 needs to fetch and start an OS
    GET  /os/{name}/boot.env           the same as shell assignments, for busybox sh
    POST /api/v1/clients/{mac}/events  a machine's progress report (JSON, at most 16 KiB)

The decisions are boot.plan's and the client state the registry's; this module only
carries them over HTTP.

Which machine fetches the phase-1 kernel: the URL iPXE fetches holds no MAC, so the
request's `?mac=` is used when given, else the machine the registry last saw at the
request's source address. That address is known by then: the same iPXE instance fetched
/boot/{mac}.ipxe from it a moment before (and DHCP told the registry too).
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from boottorrentd.boot.bootspec import boot_env, boot_json
from boottorrentd.boot.grub import grub_config
from boottorrentd.boot.ipxe import render_chain, render_ipxe
from boottorrentd.boot.loaders import GRUB_CONFIG, loaders
from boottorrentd.boot.plan import plan_boot
from boottorrentd.boot.render import qemu_oss
from boottorrentd.clients.registry import Registry, Stage
from boottorrentd.config import Config
from boottorrentd.library.store import OSEntry
from boottorrentd.names import NAME_RE
from boottorrentd.phase1.manifest import BOOT_FILES
from boottorrentd.phase1.qemu import QEMU_IMAGE, QEMU_NOT_BUILT, qemu_image
from boottorrentd.util.mac import normalize_mac

log = logging.getLogger(__name__)

MAX_REPORT = 16 * 1024
IPXE_TYPE = "text/plain"
# In-flight downloads get this long to finish when the server stops; a session stop should
# not wait a minute (aiohttp's default) for a slow client.
SHUTDOWN_TIMEOUT = 2.0


class LibraryView(Protocol):
    """What the server needs of the library (Library fits): the OSes by name, in order,
    and those of them that may be served."""

    @property
    def entries(self) -> Mapping[str, OSEntry]: ...

    @property
    def served(self) -> Mapping[str, OSEntry]: ...


class _DebugAccessLogger(AbstractAccessLogger):
    # Every client fetches several files per boot; at info level a lab boot would flood
    # the journal.
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug('%s "%s %s" %s %.3fs', request.remote, request.method,
                          request.path_qs, response.status, time)


def _reason(status: type[web.HTTPException], text: str) -> web.HTTPException:
    return status(text=text + "\n", content_type="text/plain")


def _json_error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


class BootServer:
    """The aiohttp server. `cfg` may be replaced while it runs: handlers read it each time."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        cfg: Config,
        library: LibraryView,
        registry: Registry,
        phase1_dir: Path,
        torrent_file: Callable[[OSEntry], Path] | None = None,
        on_torrent: Callable[[OSEntry], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.cfg = cfg
        self.library = library
        self.registry = registry
        self.phase1_dir = Path(phase1_dir)
        # The session may serve torrents it rewrote (with its tracker's announce URL).
        self.torrent_file: Callable[[OSEntry], Path] = torrent_file or (
            lambda entry: entry.torrent_path
        )
        # Told when a machine fetches a torrent: it starts downloading that OS now.
        self.on_torrent = on_torrent
        self._runner: web.AppRunner | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        # aiohttp refuses bodies of client_max_size bytes and more; 16 KiB itself is fine.
        app = web.Application(client_max_size=MAX_REPORT + 1)
        app.router.add_get("/boot.ipxe", self._chain)
        app.router.add_get(r"/boot/{mac:[^/]+}.ipxe", self._boot_script)
        # shim asks for the next loader as its own URL's folder, a slash, then the name:
        # /uefi//grubx64.efi.
        app.router.add_get(r"/uefi/{file:/?[^/]+}", self._uefi_loader)
        app.router.add_get(f"/{GRUB_CONFIG}", self._grub_config)
        app.router.add_get("/phase1/{file}", self._phase1)
        app.router.add_get(r"/torrents/{name:[^/]+}.torrent", self._torrent)
        app.router.add_get("/os/{name}/boot.json", self._boot_json)
        app.router.add_get("/os/{name}/boot.env", self._boot_env)
        app.router.add_post("/api/v1/clients/{mac}/events", self._events)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the boot server is already running")
        runner = web.AppRunner(self.make_app(), access_log_class=_DebugAccessLogger)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=SHUTDOWN_TIMEOUT)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        # Port 0 asks the kernel for a free one; scripts must name the real one.
        self.port = runner.addresses[0][1]
        log.info("boot HTTP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def server_address(self) -> str:
        """host:port as the clients reach this server (host_ip: the boot network's side)."""
        return f"{self.cfg.boottorrent.host_ip}:{self.port}"

    # --- handlers ------------------------------------------------------------------------

    def _oss(self) -> dict[str, str]:
        return {name: entry.spec.dispname for name, entry in self.library.served.items()}

    async def _chain(self, request: web.Request) -> web.Response:
        return web.Response(text=render_chain(self.server_address), content_type=IPXE_TYPE)

    async def _boot_script(self, request: web.Request) -> web.Response:
        try:
            mac = normalize_mac(request.match_info["mac"])
        except ValueError as exc:
            raise _reason(web.HTTPBadRequest, str(exc)) from None
        cfg = self.cfg
        plan = plan_boot(mac, self._oss(), self.registry.assignments, cfg,
                         self.registry.imaged)
        ready = await asyncio.to_thread(self.phase1_ready)
        qemu_ready = await asyncio.to_thread(self.qemu_ready)
        script = render_ipxe(plan, server=self.server_address, phase1_ready=ready,
                             cmdline_extra=cfg.client.extra_cmdline,
                             qemu_oss=qemu_oss(self.library.entries), qemu_ready=qemu_ready)
        if request.method == "GET":
            # A HEAD (a person checking with curl -I) is not a machine booting.
            self.registry.http_seen(mac, request.remote or "", Stage.MENU)
        log.debug("boot plan for %s: %s (%s)", mac, plan.kind, plan.reason)
        return web.Response(text=script, content_type=IPXE_TYPE)

    async def _uefi_loader(self, request: web.Request) -> web.StreamResponse:
        boot = self.cfg.boot
        served = await asyncio.to_thread(loaders, boot.uefi_loader, grub=boot.grub_image)
        name = request.match_info["file"].lstrip("/")
        path = served.http_files.get(name)
        if path is None:
            raise _reason(web.HTTPNotFound,
                          f"no UEFI loader {name!r}; UEFI HTTP Boot gets {served.http_boot}")
        if not await asyncio.to_thread(_regular_file, path):
            why = served.missing() or f"{path} is missing; install it with 'apt install ipxe'"
            raise _reason(web.HTTPNotFound, why)
        return web.FileResponse(path, headers={"Content-Type": "application/efi"})

    async def _grub_config(self, request: web.Request) -> web.Response:
        """The GRUB config the session writes for TFTP, rendered for this request: its
        paths are relative to the server GRUB was loaded from, TFTP or this one."""
        cfg = self.cfg
        if cfg.boot.uefi_loader != "shim":
            raise _reason(web.HTTPNotFound, "no GRUB config: boot.uefi_loader is "
                          f"{cfg.boot.uefi_loader}, so UEFI machines boot iPXE, not GRUB")
        return web.Response(text=await self.grub_text(), content_type="text/plain")

    async def grub_text(self) -> str:
        """GRUB's config from the current boot plans: what this server answers for
        /grub/grub.cfg and what the session writes into the TFTP root."""
        ready = await asyncio.to_thread(self.phase1_ready)
        qemu_ready = await asyncio.to_thread(self.qemu_ready)
        return grub_config(self._oss(), self.registry.assignments, self.cfg,
                           server=self.server_address, phase1_ready=ready,
                           imaged=self.registry.imaged,
                           qemu_oss=qemu_oss(self.library.entries), qemu_ready=qemu_ready)

    def phase1_ready(self) -> bool:
        return all(_regular_file(self.phase1_dir / name) for name in BOOT_FILES)

    def qemu_ready(self) -> bool:
        """Whether phase-1's QEMU flavour, which OSes of method qemu need, is built."""
        return _regular_file(qemu_image(self.phase1_dir.parent))

    async def _phase1(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name == QEMU_IMAGE:
            return await self._qemu_image()
        if name not in BOOT_FILES:
            raise _reason(web.HTTPNotFound,
                          f"no phase-1 file {name!r}; there are {', '.join(BOOT_FILES)}")
        mac = None
        if "mac" in request.query:
            try:
                mac = normalize_mac(request.query["mac"])
            except ValueError as exc:
                raise _reason(web.HTTPBadRequest, f"mac: {exc}") from None
        path = self.phase1_dir / name
        if not await asyncio.to_thread(_regular_file, path):
            raise _reason(web.HTTPNotFound,
                          f"the phase-1 image is not built ({name} is missing); build it on "
                          "the server with: boottorrentctl build-client")
        if name == "vmlinuz" and request.method == "GET":
            mac = mac or self.registry.mac_for_ip(request.remote or "")
            if mac is not None:
                self.registry.http_seen(mac, request.remote or "", Stage.PHASE1)
            else:
                log.debug("phase-1 kernel fetched by %s, a machine not seen before",
                          request.remote)
        return web.FileResponse(path)

    async def _qemu_image(self) -> web.StreamResponse:
        if not await asyncio.to_thread(self.qemu_ready):
            raise _reason(web.HTTPNotFound, QEMU_NOT_BUILT)
        return web.FileResponse(qemu_image(self.phase1_dir.parent))

    def _entry(self, name: str) -> OSEntry:
        # Checked before anything touches the filesystem: the name becomes a path.
        entry = self.library.entries.get(name) if NAME_RE.fullmatch(name) else None
        if entry is None:
            raise _reason(web.HTTPNotFound,
                          f"no OS named {name!r} in the library; "
                          "'boottorrentctl list-os' lists them")
        if entry.problem:
            raise _reason(web.HTTPNotFound, entry.problem)
        return entry

    async def _torrent(self, request: web.Request) -> web.StreamResponse:
        entry = self._entry(request.match_info["name"])
        path = self.torrent_file(entry)
        if not await asyncio.to_thread(_regular_file, path):
            raise _reason(web.HTTPNotFound,
                          f"the torrent of {entry.name} is missing on the server; re-add the OS")
        if self.on_torrent is not None:
            self.on_torrent(entry)
        return web.FileResponse(path, headers={"Content-Type": "application/x-bittorrent"})

    async def _boot_json(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        return web.json_response(boot_json(entry, self.cfg, server=self.server_address))

    async def _boot_env(self, request: web.Request) -> web.Response:
        entry = self._entry(request.match_info["name"])
        return web.Response(text=boot_env(entry, self.cfg, server=self.server_address),
                            content_type="text/plain", charset="utf-8")

    async def _events(self, request: web.Request) -> web.Response:
        # The reporter is a script on the client: errors come back as JSON it can print.
        try:
            mac = normalize_mac(request.match_info["mac"])
        except ValueError as exc:
            return _json_error(400, str(exc))
        if request.content_type != "application/json":
            return _json_error(415, f"send the report as application/json, not "
                                    f"{request.content_type or 'no content type'}")
        if request.content_length is not None and request.content_length > MAX_REPORT:
            return _json_error(413, f"a report is at most {MAX_REPORT} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"a report is at most {MAX_REPORT} bytes")
        try:
            payload = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            return _json_error(400, f"the body is not valid JSON: {exc}")
        try:
            client = self.registry.report(mac, payload, ip=request.remote or "")
        except PermissionError as exc:
            return _json_error(403, str(exc))
        except ValueError as exc:
            return _json_error(422, str(exc))
        return web.json_response(client.to_dict())


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
