"""The OS library: <state>/oss/<name>/ folders and <state>/torrents/<name>.torrent.

An entry exists once its torrent file exists: the torrent is renamed into place last,
so a crash at any earlier point leaves only temporary files (removed at the next load)
or a folder without a torrent (removed too), never a half entry that looks whole.
"""

import asyncio
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from boottorrentd.errors import Busy, ConfigError, Exists, InvalidArgument, NotFound
from boottorrentd.library import osimport
from boottorrentd.library.integrity import quick_check
from boottorrentd.library.osspec import OSSpec, load_os_config, parse_os_config, render_os_config
from boottorrentd.library.payload import scan_payload
from boottorrentd.library.torrent import TorrentInfo, make_torrent, read_torrent
from boottorrentd.names import check_name
from boottorrentd.util.fs import (
    CORRUPT_SUFFIX,
    TMP_PREFIX,
    copy_file,
    fsync_dir,
    read_state,
    write_atomic,
)

log = logging.getLogger(__name__)

# progress(name, phase, done_bytes, total_bytes); phase is "copying" or "hashing".
Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class OSEntry:
    name: str
    path: Path
    linked: bool
    spec: OSSpec
    torrent_path: Path
    torrent: TorrentInfo
    # Why it is not served (offered, seeded, assigned), with the fix; "" when it is.
    problem: str = ""

    @property
    def size_bytes(self) -> int:
        return self.torrent.total_size


class Library:
    def __init__(self, state_dir: Path) -> None:
        self.oss_dir = state_dir / "oss"
        self.torrents_dir = state_dir / "torrents"
        self.entries: dict[str, OSEntry] = {}
        self._busy: set[str] = set()
        # Called with the entry whose problem was found or cleared.
        self.on_problem: list[Callable[[OSEntry], None]] = []

    @property
    def served(self) -> dict[str, OSEntry]:
        """The entries that may be offered, seeded and assigned: those without a problem."""
        return {name: e for name, e in self.entries.items() if not e.problem}

    def set_problem(self, name: str, problem: str) -> None:
        """Mark OS `name` not served with `problem` (the reason and the fix), or served
        again with ""."""
        entry = self.entries.get(name)
        if entry is None or entry.problem == problem:
            return
        self.entries[name] = entry = replace(entry, problem=problem)
        if problem:
            log.error("%s", problem, extra={"BOOTTORRENT_OS": name})
        else:
            log.info("OS %s matches its torrent again and is served", name,
                     extra={"BOOTTORRENT_OS": name})
        for listener in list(self.on_problem):
            listener(entry)

    def torrent_path(self, name: str) -> Path:
        return self.torrents_dir / f"{name}.torrent"

    def load(self) -> None:
        """Read the library from disk, clearing what an interrupted add or remove left."""
        self.oss_dir.mkdir(parents=True, exist_ok=True)
        self.torrents_dir.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.oss_dir.glob(TMP_PREFIX + "*"),
                         *self.torrents_dir.glob(TMP_PREFIX + "*")]:
            log.info("removing %s, left by an interrupted change", leftover)
            _remove_path(leftover)
        for torrent in self.torrents_dir.glob("*.torrent"):
            if not (self.oss_dir / torrent.stem).exists():
                log.warning("removing %s: its OS folder is gone", torrent)
                torrent.unlink()
        self.entries = {}
        for folder in sorted(self.oss_dir.iterdir()):
            name = folder.name
            torrent = self.torrent_path(name)
            if not torrent.exists() and not self._set_aside_torrents(name):
                log.warning("removing %s: it has no torrent (an add was interrupted)", folder)
                _remove_path(folder)
                continue
            try:
                # None when corrupt (now set aside) or set aside by an earlier load.
                info = read_state(torrent, read_torrent)
            except OSError as e:
                info, problem = None, f"its torrent cannot be read: {e}"
            else:
                problem = "its torrent was corrupt and is set aside"
            if info is None:
                # The folder is the admin's data and stays; the set-aside torrent tells the
                # next load that this is not an interrupted add to clear.
                log.error("OS %s is not served: %s; remove it with 'boottorrentctl "
                          "remove-os %s' and add it again", name, problem, name,
                          extra={"BOOTTORRENT_OS": name})
                continue
            try:
                entry = self._read_entry(name, info)
            except (ConfigError, InvalidArgument, ValueError, OSError) as e:
                log.error("OS %s is not served: %s; fix it, or remove it with "
                          "'boottorrentctl remove-os %s'", name, e, name,
                          extra={"BOOTTORRENT_OS": name})
                continue
            self.entries[name] = entry
            self.set_problem(name, quick_check(name, entry.path, entry.torrent_path, info))

    def _set_aside_torrents(self, name: str) -> list[Path]:
        return list(self.torrents_dir.glob(f"{name}.torrent{CORRUPT_SUFFIX}*"))

    def _read_entry(self, name: str, torrent: TorrentInfo) -> OSEntry:
        folder = self.oss_dir / name
        torrent_path = self.torrent_path(name)
        return OSEntry(
            name=name,
            path=folder.resolve(),
            linked=folder.is_symlink(),
            spec=load_os_config(folder, default_dispname=name),
            torrent_path=torrent_path,
            torrent=torrent,
        )

    def get(self, name: str) -> OSEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise NotFound(
                f"no OS named {name!r} in the library; 'boottorrentctl list-os' lists them"
            ) from None

    async def add(
        self,
        name: str,
        source: Path,
        *,
        link: bool = False,
        config_values: dict[str, str] | None = None,
        progress: Progress | None = None,
        piece_length: int | None = None,
        from_source: bool = False,
    ) -> OSEntry:
        """Copy (or with `link`, use) `source` as OS `name` and make its torrent, in pieces
        of `piece_length` bytes (None: chosen by size). With `from_source`, `source` is a
        live-build tree or ISO or an installed root, made into a live OS (osimport);
        `config_values` then add to or replace the values recognised."""
        check_name(name)
        if not source.is_absolute():
            raise InvalidArgument(f"source folder {str(source)!r} must be an absolute path")
        if name in self.entries or (self.oss_dir / name).exists():
            raise Exists(f"an OS named {name!r} is already in the library; remove it first "
                         f"with 'boottorrentctl remove-os {name}' or pick another name")
        if name in self._busy:
            raise Busy(f"OS {name!r} is being added or removed right now; try again when done")
        self._busy.add(name)
        try:
            if from_source:
                if link:
                    raise InvalidArgument("--from makes a new OS folder from the source, so "
                                          "it cannot --link it; drop --link")
                entry = await asyncio.to_thread(
                    self._import_blocking, name, source, config_values, progress, piece_length
                )
            else:
                entry = await asyncio.to_thread(
                    self._add_blocking, name, source, link, config_values, progress,
                    piece_length,
                )
        except PermissionError as e:
            raise _unreadable(source, e) from None
        finally:
            self._busy.discard(name)
        self.entries[name] = entry
        return entry

    def _add_blocking(
        self,
        name: str,
        source: Path,
        link: bool,
        config_values: dict[str, str] | None,
        progress: Progress | None,
        piece_length: int | None,
    ) -> OSEntry:
        report = progress or (lambda *_: None)
        _check_source(source, link, config_values)
        config_text, spec = _describe(name, source, config_values)
        self._check_dispname(spec)
        # Refuse symlinks and empty folders before anything is copied.
        total = sum(f.length for f in scan_payload(source))

        staged = self._staging(name)
        try:
            if link:
                staged.rmdir()
                if config_text is not None:
                    write_atomic(source / "config.yaml", config_text)
                staged.symlink_to(source)
            else:
                _copy_tree(source, staged, lambda done: report(name, "copying", done, total))
                if config_text is not None:
                    write_atomic(staged / "config.yaml", config_text)
            return self._commit(name, staged, spec, link, report, piece_length)
        except BaseException:
            _remove_path(staged)
            raise

    def _import_blocking(
        self,
        name: str,
        source: Path,
        config_values: dict[str, str] | None,
        progress: Progress | None,
        piece_length: int | None,
    ) -> OSEntry:
        report = progress or (lambda *_: None)
        found = osimport.recognise(source)
        log.info("OS %s: %s is a %s (kernel %s, initrd %s)", name, source, found.kind,
                 found.kernel, found.initrd, extra={"BOOTTORRENT_OS": name})
        values = {**found.config_values(), **(config_values or {})}
        if values["method"] != "live":
            raise InvalidArgument(f"--from makes a live OS; drop --method {values['method']}")
        # The form of the values is checked before the long work, the files after it.
        text = render_os_config({"dispname": name, **values})
        self._check_dispname(_spec_of_text(text, None, name))
        staged = self._staging(name)
        try:
            osimport.import_os(found, staged,
                               lambda phase, done, total: report(name, phase, done, total))
            write_atomic(staged / "config.yaml", text)
            spec = _spec_of_text(text, staged, name)
            return self._commit(name, staged, spec, False, report, piece_length)
        except BaseException:
            _remove_path(staged)
            raise

    def _check_dispname(self, spec: OSSpec) -> None:
        for other in self.entries.values():
            if other.spec.dispname == spec.dispname:
                raise Exists(f"OS {other.name!r} already shows as {spec.dispname!r} in the "
                             "menu; give this one another dispname")

    def _staging(self, name: str) -> Path:
        """A new folder for OS `name` to be made in; load() removes it if left behind."""
        staged = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=self.oss_dir))
        # mkdtemp makes it 0700; the seeder runs as an unprivileged user and must read it.
        staged.chmod(0o755)
        return staged

    def _commit(
        self,
        name: str,
        staged: Path,
        spec: OSSpec,
        link: bool,
        report: Progress,
        piece_length: int | None,
    ) -> OSEntry:
        """Make the torrent of the `staged` folder and put both in place."""
        staged_torrent = self.torrents_dir / f"{TMP_PREFIX}{name}.torrent"
        try:
            torrent, info = make_torrent(
                staged, name, progress=lambda done, tot: report(name, "hashing", done, tot),
                piece_length=piece_length,
            )
            write_atomic(staged_torrent, torrent)
            staged.rename(self.oss_dir / name)
            # The commit point: from here on the entry is whole.
            staged_torrent.rename(self.torrent_path(name))
            fsync_dir(self.torrents_dir)
        except BaseException:
            staged_torrent.unlink(missing_ok=True)
            raise
        return OSEntry(
            name=name,
            path=(self.oss_dir / name).resolve(),
            linked=link,
            spec=spec,
            torrent_path=self.torrent_path(name),
            torrent=info,
        )

    async def remove(self, name: str) -> None:
        check_name(name)
        folder = self.oss_dir / name
        if name not in self.entries and not folder.exists() and not folder.is_symlink():
            self.get(name)  # raises NotFound with the usual message
        if name in self._busy:
            raise Busy(f"OS {name!r} is being added or removed right now; try again when done")
        self._busy.add(name)
        try:
            # Torrent first: without it the folder is a leftover that load() clears.
            self.torrent_path(name).unlink(missing_ok=True)
            for aside in self._set_aside_torrents(name):
                aside.unlink()
            self.entries.pop(name, None)
            await asyncio.to_thread(_remove_path, folder)
        finally:
            self._busy.discard(name)


# What the hardened unit hides from the daemon (PrivateTmp=, ProtectHome=yes).
HIDDEN = ("/tmp/", "/var/tmp/", "/home/", "/root/", "/run/user/")


def _hidden_hint(source: Path) -> str:
    if not str(source).startswith(HIDDEN):
        return ""
    return ("; under systemd the daemon has a private /tmp and /var/tmp and does not see "
            "/home, /root or /run/user: copy the OS to a folder under /srv and add that")


def _unreadable(source: Path, error: PermissionError) -> InvalidArgument:
    # The daemon is root but, in its unit, without CAP_DAC_OVERRIDE: a file or folder
    # that only another user may read is as closed to it as to anyone.
    hint = _hidden_hint(source)
    if hint:
        return InvalidArgument(f"the daemon cannot read {source}{hint}")
    return InvalidArgument(
        f"the daemon cannot read {error.filename or source}: only its owner may; make the "
        f"OS folder readable ('chmod -R a+rX {source}'), or copy it as root to a folder "
        "under /srv and add that")


def _check_source(source: Path, link: bool, config_values: dict[str, str] | None) -> None:
    if not source.is_dir():
        hint = _hidden_hint(source)
        raise InvalidArgument(f"source folder {str(source)!r} does not exist or is not a "
                              f"folder; give the folder that holds the OS's files{hint}")
    if link and config_values:
        raise InvalidArgument(
            "--link uses the folder as it is, so it needs its own config.yaml; drop "
            "--method/--kernel/... or add the OS without --link")


def _describe(
    name: str, source: Path, config_values: dict[str, str] | None
) -> tuple[str | None, OSSpec]:
    """The OS's spec, and the config.yaml text to write (None: the folder's own is used)."""
    has_config = (source / "config.yaml").exists()
    if not config_values:
        if not has_config:
            raise InvalidArgument(
                f"{source} has no config.yaml: add one (see 'boottorrentctl add-os --help'), "
                "or describe the OS with --method and its options"
            )
        return None, load_os_config(source, default_dispname=name)
    if has_config:
        raise InvalidArgument(
            f"{source}/config.yaml already describes this OS; drop the --method/--kernel/... "
            "options, or remove that file to describe the OS with them"
        )
    text = render_os_config({"dispname": name, **config_values})
    return text, _spec_of_text(text, source, name)


def _spec_of_text(text: str, folder: Path | None, name: str) -> OSSpec:
    """The spec of a config.yaml text that render_os_config wrote; its files are checked
    in `folder` (None: their form only)."""
    return parse_os_config(yaml.safe_load(text), folder, default_dispname=name)


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _progress_after(progress: Callable[[int], object], before: int, done: int) -> None:
    progress(before + done)


def _copy_tree(source: Path, dest: Path, progress: Callable[[int], object]) -> None:
    done = 0
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        rel = Path(dirpath).relative_to(source)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for fname in sorted(filenames):
            src, dst = Path(dirpath) / fname, dest / rel / fname
            done += copy_file(src, dst, functools.partial(_progress_after, progress, done))
            shutil.copymode(src, dst)
