"""The daemon's state and the operations on it; the D-Bus layer only translates."""

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from boottorrentd.clients.registry import Registry
from boottorrentd.config import Config, load_config
from boottorrentd.config.changes import Changes, apply_live, diff
from boottorrentd.errors import BootTorrentError, Busy, Exists, InvalidArgument
from boottorrentd.library.osspec import load_os_config
from boottorrentd.library.store import Library, OSEntry, check_name
from boottorrentd.phase1 import build as phase1
from boottorrentd.phase1.qemu import QEMU_METHODS, build_qemu, needs_qemu, read_qemu_manifest
from boottorrentd.session.session import Session
from boottorrentd.util.fs import write_atomic
from boottorrentd.util.mac import normalize_mac

log = logging.getLogger(__name__)

# How the Manager makes a session (Session itself, or a fake in the state-machine tests).
SessionFactory = Callable[
    [Config, Library, Registry, Path, Path, Callable[[], None]], Session]


class SessionState(StrEnum):
    """The boot session as D-Bus (Manager.State) and the daemon's status show it."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"  # running, but a child is down: never stored, derived
    STOPPING = "stopping"
    FAILED = "failed"  # the last start failed; state_reason says why


class Manager:
    def __init__(
        self,
        config: Config,
        config_path: Path,
        state_dir: Path,
        runtime_dir: Path,
        *,
        session_factory: SessionFactory = Session,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.library = Library(state_dir)
        self.registry = Registry(state_dir / "clients.json")
        self.session: Session | None = None
        self._new_session = session_factory
        self._state = SessionState.STOPPED
        self._reason = ""
        self._lifecycle = asyncio.Lock()
        self.on_os_added: list[Callable[[OSEntry], None]] = []
        self.on_os_removed: list[Callable[[str], None]] = []
        self.on_progress: list[Callable[[str, str, int, int], None]] = []
        self.on_state_change: list[Callable[[], None]] = []
        self.on_config_change: list[Callable[[], None]] = []
        self.on_build_progress: list[Callable[[str, float], None]] = []
        self._building = False
        self._qemu_build: asyncio.Task | None = None

    def load(self) -> None:
        self.library.load()

    # --- the configuration ---------------------------------------------------------------

    @property
    def config_in_use(self) -> Config:
        """What the running session uses; when none runs, the file's, which the next start
        uses. The Manager's configuration properties show this."""
        return self.session.config if self.session is not None else self.config

    @property
    def pending_restart(self) -> tuple[str, ...]:
        """The keys of the file that the running session does not use yet."""
        if self.session is None:
            return ()
        return diff(self.session.config, self.config).restart

    async def reload(self) -> Changes:
        """Read the configuration file again. An invalid file is refused (ConfigError,
        naming the key) and changes nothing. A valid one becomes the file the next start
        uses; a running session takes its live keys at once and keeps running on the
        others, which the state reason names. Returns the keys in which the file differs
        from the configuration in use before the reload."""
        async with self._lifecycle:
            config = await asyncio.to_thread(load_config, self.config_path)
            return self._take(config)

    def _take(self, config: Config) -> Changes:
        changes = diff(self.config_in_use, config)
        self.config = config
        if self.session is not None:
            self.session.reconfigure(apply_live(self.session.config, config))
        log.info("configuration %s read again: %s", self.config_path, _describe(changes, self))
        self._state_changed()
        for cb in self.on_config_change:
            cb()
        return changes

    # --- the boot session ----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        if (self._state == SessionState.RUNNING and self.session is not None
                and self.session.degraded):
            return SessionState.DEGRADED
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the session failed; while it runs, what the session says about itself
        (proxyDHCP beside another server, another DHCP server seen, a child down) and
        the keys of the file it does not use until it is restarted."""
        if self._state == SessionState.RUNNING and self.session is not None:
            return "; ".join(r for r in (self.session.reason,
                                         _restart_reason(self.pending_restart)) if r)
        return self._reason

    def _set_state(self, state: SessionState, reason: str = "") -> None:
        self._state, self._reason = state, reason
        self._state_changed()

    def _state_changed(self) -> None:
        for cb in self.on_state_change:
            cb()

    async def start_session(self) -> None:
        async with self._lifecycle:
            if self.session is not None:
                return  # already running: starting is idempotent, as with systemctl start
            self._set_state(SessionState.STARTING)
            try:
                # An edited file counts from the next start, reloaded or not.
                config = await asyncio.to_thread(load_config, self.config_path)
            except BootTorrentError as e:
                self._set_state(SessionState.FAILED, str(e))
                raise
            if config != self.config:
                self._take(config)
            session = self._new_session(self.config, self.library, self.registry,
                                        self.state_dir, self.runtime_dir, self._state_changed)
            try:
                await session.start()
            except BootTorrentError as e:
                self._set_state(SessionState.FAILED, str(e))
                raise
            except Exception as e:
                log.exception("the session failed to start")
                self._set_state(SessionState.FAILED, str(e))
                raise BootTorrentError(f"the session failed to start: {e}") from e
            self.session = session
            self._set_state(SessionState.RUNNING)
            for cb in self.on_config_change:
                cb()
            if self._needs_qemu():
                # A library from before the flavour existed, or a new kernel: build it now.
                self._build_qemu_soon()

    async def stop_session(self, *, forget: bool = True) -> None:
        async with self._lifecycle:
            session, self.session = self.session, None
            if session is None:
                if self._state == SessionState.FAILED:
                    self._set_state(SessionState.STOPPED)
                return
            self._set_state(SessionState.STOPPING)
            await session.stop(forget=forget)
            self._set_state(SessionState.STOPPED)
            for cb in self.on_config_change:
                cb()

    async def restore_session(self) -> None:
        """Bring back a session that ran when the daemon last stopped or died."""
        if not Session.remembered(self.state_dir).get("active"):
            return
        log.info("restoring the boot session that was running before the daemon restarted")
        try:
            await self.start_session()
        except BootTorrentError as e:
            log.error("could not restore the boot session: %s", e)

    async def assign(self, mac: str, os_name: str) -> str:
        mac = _mac(mac)
        entry = self.library.get(os_name)
        if problem := entry.problem:
            raise InvalidArgument(f"cannot assign {mac} to {os_name}: {problem}")
        if entry.spec.method == "image" and not self.config_in_use.client.allow_disk_writes:
            raise InvalidArgument(
                f"{os_name} is a disk image that would be written over {mac}'s disk, and "
                "disk writes are off: set client.allow_disk_writes: true in "
                f"{self.config_path} (then `boottorrentctl reload`) to allow them")
        self.registry.assign(mac, os_name)
        await self.registry.flush()
        log.info("client %s assigned to %s", mac, os_name, extra={"BOOTTORRENT_MAC": mac})
        return mac

    async def stop_seeding(self, os_name: str) -> None:
        """Stop the server's seed of `os_name` until the session restarts: the machines
        that hold it serve it to each other (the tracker and the menu stay)."""
        self.library.get(os_name)
        if self.session is None:
            raise InvalidArgument(f"no boot session runs, so nothing seeds {os_name}; "
                                  "start one with 'boottorrentctl start'")
        await self.session.stop_seeding(os_name)
        log.info("stopped seeding %s for the rest of the session", os_name,
                 extra={"BOOTTORRENT_OS": os_name})
        self._state_changed()

    async def unassign(self, mac: str) -> str:
        mac = _mac(mac)
        self.registry.unassign(mac)
        await self.registry.flush()
        return mac

    async def build_client_image(self, kernel_version: str | None = None) -> phase1.Manifest:
        """Build the phase-1 kernel + initrd in a thread; the session serves them at once."""
        if self._building:
            raise Busy("a phase-1 image is being built right now; wait for it to finish")
        self._building = True
        loop = asyncio.get_running_loop()

        def report(step: str, fraction: float) -> None:
            for cb in self.on_build_progress:
                loop.call_soon_threadsafe(cb, step, fraction)

        try:
            manifest = await asyncio.to_thread(
                phase1.build, self.state_dir, kernel_version=kernel_version, progress=report)
            if self._needs_qemu():
                await asyncio.to_thread(build_qemu, self.state_dir,
                                        kernel_version=manifest.kernel_version)
        finally:
            self._building = False
        log.info("built the phase-1 image for kernel %s: vmlinuz %d bytes, initrd %d bytes",
                 manifest.kernel_version, manifest.vmlinuz["size"], manifest.initrd["size"])
        if self.session is not None:
            # GRUB's config said "not built" until now.
            await self.session.boot_plans_changed()
        return manifest

    def _progress_threadsafe(self) -> Callable[[str, str, int, int], None]:
        loop = asyncio.get_running_loop()

        def report(name: str, phase: str, done: int, total: int) -> None:
            for cb in self.on_progress:
                loop.call_soon_threadsafe(cb, name, phase, done, total)

        return report

    async def add_os(
        self,
        name: str,
        source_dir: str,
        *,
        link: bool = False,
        config_values: dict[str, str] | None = None,
        from_source: bool = False,
    ) -> OSEntry:
        """Add an OS folder; with `from_source`, make one from a live-build tree or ISO or
        an installed root (library.osimport)."""
        log.info("adding OS %s from %s%s", name, source_dir,
                 " (linked)" if link else " (recognising it)" if from_source else "",
                 extra={"BOOTTORRENT_OS": name})
        entry = await self.library.add(
            name,
            Path(source_dir),
            link=link,
            config_values=config_values,
            progress=self._progress_threadsafe(),
            piece_length=self.config.library.fixed_piece_length,
            from_source=from_source,
        )
        log.info("added OS %s: %d bytes in %d files, infohash %s", name, entry.size_bytes,
                 len(entry.torrent.files), entry.torrent.infohash,
                 extra={"BOOTTORRENT_OS": name, "BOOTTORRENT_INFOHASH": entry.torrent.infohash})
        for cb in self.on_os_added:
            cb(entry)
        if self.session is not None:
            await self.session.library_changed()
        if entry.spec.method in QEMU_METHODS:
            self._build_qemu_soon()
        return entry

    def _needs_qemu(self) -> bool:
        return needs_qemu([entry.spec.method for entry in self.library.entries.values()])

    def _build_qemu_soon(self) -> None:
        """Build phase-1's QEMU flavour in the background for the phase-1 image's kernel,
        unless it is built for it already (build-client builds both)."""
        if self._qemu_build is None or self._qemu_build.done():
            self._qemu_build = asyncio.create_task(self._build_qemu(), name="phase1-qemu")

    async def _build_qemu(self) -> None:
        base = await asyncio.to_thread(phase1.read_manifest, self.state_dir)
        if base is None or self._building:
            return
        built = await asyncio.to_thread(read_qemu_manifest, self.state_dir)
        if built is not None and built.get("kernel_version") == base.kernel_version:
            return
        log.info("building phase-1's QEMU flavour for kernel %s", base.kernel_version)
        try:
            done = await asyncio.to_thread(build_qemu, self.state_dir,
                                           kernel_version=base.kernel_version)
        except BootTorrentError as e:
            log.error("could not build phase-1's QEMU flavour, which OSes of method qemu "
                      "need: %s", e)
            return
        log.info("built phase-1's QEMU flavour: %d bytes", done["size"])
        if self.session is not None:
            # GRUB's config said "not built" for the OSes of method qemu until now.
            await self.session.boot_plans_changed()

    async def remove_os(self, name: str) -> None:
        await self.library.remove(name)
        log.info("removed OS %s", name, extra={"BOOTTORRENT_OS": name})
        for cb in self.on_os_removed:
            cb(name)
        if self.session is not None:
            await self.session.library_changed()

    async def import_project(self, project_dir: str) -> list[str]:
        """Load a seed-style project: its Boottorrent.yaml becomes the daemon's config and
        every oss/<name>/ folder is added. Everything is checked before anything changes."""
        project = Path(project_dir)
        if not project.is_absolute():
            raise InvalidArgument(f"project folder {project_dir!r} must be an absolute path")
        config_file = project / "Boottorrent.yaml"
        config = await asyncio.to_thread(load_config, config_file)
        text = await asyncio.to_thread(config_file.read_text)
        oss_dir = project / "oss"
        folders = sorted(p for p in oss_dir.iterdir() if p.is_dir()) if oss_dir.is_dir() else []
        for folder in folders:
            check_name(folder.name)
            if folder.name in self.library.entries:
                raise Exists(f"{folder}: an OS named {folder.name!r} is already in the library; "
                             f"remove it first with 'boottorrentctl remove-os {folder.name}'")
            await asyncio.to_thread(load_os_config, folder, folder.name)

        await asyncio.to_thread(write_atomic, self.config_path, text)
        self._take(config)
        log.info("imported the configuration of %s into %s", project, self.config_path)
        for folder in folders:
            await self.add_os(folder.name, str(folder))
        return [f.name for f in folders]


def _restart_reason(keys: tuple[str, ...]) -> str:
    return f"restart the session to apply: {', '.join(keys)}" if keys else ""


def _describe(changes: Changes, manager: Manager) -> str:
    if not changes:
        return "no change"
    parts = []
    if changes.live:
        parts.append(f"applied {', '.join(changes.live)}")
    if changes.restart:
        when = "from the next session start" if manager.session is not None else "at the next start"
        parts.append(f"{', '.join(changes.restart)} {when}")
    return "; ".join(parts)


def _mac(text: str) -> str:
    # A bad MAC from a D-Bus caller is the caller's error, not the daemon's failure.
    try:
        return normalize_mac(text)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
