"""The daemon's state and the operations on it; the D-Bus layer only translates."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from .config import Config, load_config
from .errors import Exists, InvalidArgument
from .library import Library, OSEntry, check_name, write_atomic
from .osspec import load_os_config

log = logging.getLogger(__name__)


class Manager:
    def __init__(self, config: Config, config_path: Path, state_dir: Path, runtime_dir: Path):
        self.config = config
        self.config_path = config_path
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        # Sessions arrive with the boot network; until then the daemon only keeps the library.
        self.state = "stopped"
        self.library = Library(state_dir)
        self.on_os_added: list[Callable[[OSEntry], None]] = []
        self.on_os_removed: list[Callable[[str], None]] = []
        self.on_progress: list[Callable[[str, str, int, int], None]] = []

    def load(self) -> None:
        self.library.load()

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
    ) -> OSEntry:
        log.info("adding OS %s from %s%s", name, source_dir, " (linked)" if link else "",
                 extra={"BOOTTORRENT_OS": name})
        entry = await self.library.add(
            name,
            Path(source_dir),
            link=link,
            config_values=config_values,
            progress=self._progress_threadsafe(),
        )
        log.info("added OS %s: %d bytes in %d files, infohash %s", name, entry.size_bytes,
                 len(entry.torrent.files), entry.torrent.infohash,
                 extra={"BOOTTORRENT_OS": name, "BOOTTORRENT_INFOHASH": entry.torrent.infohash})
        for cb in self.on_os_added:
            cb(entry)
        return entry

    async def remove_os(self, name: str) -> None:
        await self.library.remove(name)
        log.info("removed OS %s", name, extra={"BOOTTORRENT_OS": name})
        for cb in self.on_os_removed:
            cb(name)

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
        self.config = config
        log.info("imported the configuration of %s into %s", project, self.config_path)
        for folder in folders:
            await self.add_os(folder.name, str(folder))
        return [f.name for f in folders]
