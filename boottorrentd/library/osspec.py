"""One OS folder's `config.yaml`: how a client starts that OS once it has downloaded it.

The seed's keys stay valid (methods kexec, bin, bin-qemu-x86_64); qemu, live and image are
new. The per-method key tables in `boottorrentd.api` (AddOS takes these keys, so the CLI
reads them too) are the single source of truth for validation, the files
`render_os_config` writes and the help text (`method_keys`).

File keys name files inside the OS folder. The whole folder is shared over BitTorrent, so
a key must never reach outside it: no absolute paths, no '..', no symbolic links.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from boottorrentd.api import (
    ABSPATH,
    CHOICE,
    DISK,
    DISK_RULES,
    FILE,
    LABEL,
    METHODS,
    TEXT,
    KeyDoc,
)
from boottorrentd.api import OS_COMMON_KEYS as _COMMON
from boottorrentd.api import OS_METHOD_KEYS as _METHOD_KEYS
from boottorrentd.config import (
    check_single_line,
    comment,
    describe,
    did_you_mean,
    read_yaml_file,
    write_eg,
    yaml_scalar,
)
from boottorrentd.errors import ConfigError

CONFIG_NAME = "config.yaml"

@dataclass(frozen=True)
class OSSpec:
    """A validated config.yaml.

    `method` is as written (qemu and bin-qemu-x86_64 both stay as they are); `fields`
    holds the method's own keys as strings, defaults filled in, file paths normalised.
    """

    dispname: str
    method: str
    fields: dict[str, str]

    def boot_spec(self) -> dict:
        """What the client's boot.json says about this OS."""
        return {"method": self.method, "dispname": self.dispname, **self.fields}

    @property
    def files(self) -> dict[str, str]:
        """The file keys and the paths, relative to the OS folder, that they name."""
        kinds = {key.name: key.kind for key in _METHOD_KEYS[self.method]}
        return {name: value for name, value in self.fields.items()
                if kinds[name] == FILE and value}


COMMON_KEYS: dict[str, KeyDoc] = {key.name: key for key in _COMMON}


def method_keys(method: str) -> dict[str, KeyDoc]:
    """The method's own keys (beyond COMMON_KEYS), in the order files list them."""
    if method not in _METHOD_KEYS:
        raise _unknown_method(method, CONFIG_NAME)
    return {key.name: key for key in _METHOD_KEYS[method]}


def _unknown_method(method: object, source: str) -> ConfigError:
    return ConfigError(
        source,
        "method",
        f"unknown method {describe(method)}{did_you_mean(method, METHODS)}; the known "
        f"methods are {', '.join(METHODS)}; {write_eg('method: kexec')}",
    )


def _as_string(value: object, key: KeyDoc, source: str) -> str | None:
    """The value as a string; None when it is null (the key counts as not given)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        # YAML reads yes/no/on/off/true/false as booleans; "True" would not mean that.
        raise ConfigError(
            source,
            key.name,
            f"expected a string, got {describe(value)}; quote it if you meant the word: "
            f"write '{key.name}: \"{value!s}\"'",
        )
    if isinstance(value, int | float | datetime.date):
        # The seed's files hold unquoted numbers; what YAML read back is what was meant.
        return str(value)
    raise ConfigError(
        source,
        key.name,
        f"expected a single value, got {describe(value)}; write it on one line, e.g. "
        f"'{key.name}: {key.example}'"
        + (" (several arguments go in one string)" if key.kind == TEXT else ""),
    )


def _folder_listing(folder: Path) -> str:
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return f"the folder {folder} does not exist"
    except OSError as exc:
        return f"the folder {folder} cannot be listed ({exc.strerror})"
    if not names:
        return f"{folder} is empty"
    shown = ", ".join(names[:8])
    more = f", and {len(names) - 8} more" if len(names) > 8 else ""
    return f"{folder} holds: {shown}{more}"


# How to fix a file key that names no file inside the OS folder.
_FILE_FIX = "copy the file into the OS folder and give its name there"


def _check_file(value: str, key: KeyDoc, folder: Path | None, source: str) -> str:
    """The path, normalised, after checking it names a regular file inside `folder`.

    Without a folder only the form of the path is checked.
    """
    path = _file_path(value, key, source)
    if folder is not None:
        _check_file_in(folder, path, value, key, source)
    return str(path)


def _file_path(value: str, key: KeyDoc, source: str) -> PurePosixPath:
    """`value` as a path, after checking it is relative and stays inside the folder."""
    path = PurePosixPath(value)
    if not value.strip() or not path.parts:
        # "." and "./" name the folder itself, which PurePosixPath reduces to no parts.
        raise ConfigError(
            source,
            key.name,
            f"names no file ({value!r}); {write_eg(f'{key.name}: {key.example}')}",
        )
    if path.is_absolute():
        raise ConfigError(
            source,
            key.name,
            f"{value!r} is an absolute path; file keys name files inside the OS folder: "
            f"{_FILE_FIX}",
        )
    if ".." in path.parts:
        raise ConfigError(
            source,
            key.name,
            f"{value!r} leads out of the OS folder ('..'); the whole folder is what clients "
            f"download: {_FILE_FIX}",
        )
    return path


def _check_file_in(
    folder: Path, path: PurePosixPath, value: str, key: KeyDoc, source: str
) -> None:
    """Check that `path` is a regular file in `folder`, reached through real folders only."""
    current = folder
    for depth, part in enumerate(path.parts):
        current = current / part
        last = depth == len(path.parts) - 1
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            names: list[str] = []
            with contextlib.suppress(OSError):
                names = os.listdir(current.parent)
            raise ConfigError(
                source,
                key.name,
                f"no file {value!r} in the OS folder{did_you_mean(part, names)}; "
                f"{_folder_listing(folder)}; {_FILE_FIX}, or correct the name",
            ) from None
        if stat.S_ISLNK(mode):
            raise ConfigError(
                source,
                key.name,
                f"{value!r} is a symbolic link ({current}); only real files are shared: "
                f"replace it with the file itself (e.g. `cp --remove-destination "
                f'"$(readlink -f {current})" {current}`)',
            )
        if last and not stat.S_ISREG(mode):
            raise ConfigError(
                source,
                key.name,
                f"{value!r} is not a regular file; name a file in the OS folder",
            )
        if not last and not stat.S_ISDIR(mode):
            raise ConfigError(
                source,
                key.name,
                f"{value!r}: {part!r} is not a folder; {_FILE_FIX}, or correct the name",
            )


def _check_value(value: str, key: KeyDoc, folder: Path | None, source: str) -> str:
    """The value to keep, after checking it fits `key`'s kind."""
    problem = check_single_line(value)
    if problem:
        raise ConfigError(source, key.name, problem)
    if key.kind == FILE:
        if not value and not key.required:
            # An optional file left empty: the method goes without it.
            return value
        return _check_file(value, key, folder, source)
    if key.kind == LABEL and not value.strip():
        raise ConfigError(source, key.name, f"is empty; {write_eg(f'{key.name}: {key.example}')}")
    if key.kind == CHOICE and value not in key.choices:
        raise ConfigError(
            source,
            key.name,
            f"expected one of {', '.join(key.choices)}, got {value!r}"
            f"{did_you_mean(value, key.choices)}; {write_eg(f'{key.name}: {key.default}')}",
        )
    if key.kind == DISK and value not in DISK_RULES and (
        not value.startswith("/dev/")
        or len(value) <= len("/dev/")
        or ".." in PurePosixPath(value).parts
        or any(ch.isspace() for ch in value)
    ):
        raise ConfigError(
            source,
            key.name,
            f"expected {' or '.join(DISK_RULES)} or a device under /dev/, got {value!r}"
            f"{did_you_mean(value, DISK_RULES)}; see `lsblk` on a client and "
            f"{write_eg(f'{key.name}: {key.default}')}",
        )
    if key.kind == ABSPATH and not value.startswith("/"):
        raise ConfigError(
            source,
            key.name,
            f"expected an absolute path inside the OS's root filesystem, got {value!r}; "
            f"{write_eg(f'{key.name}: {key.default}')}",
        )
    return value


def _validate(
    data: object, folder: Path | None, source: str, default_dispname: str | None
) -> OSSpec:
    mapping = _renamed_keys(_as_mapping(data, source), source)
    method = _method_of(mapping, source)
    _refuse_unknown_keys(mapping, method, source)
    dispname = _dispname_of(mapping, folder, source, default_dispname)
    fields = {
        key.name: _field(mapping, key, method, folder, source) for key in _METHOD_KEYS[method]
    }
    if method == "live":
        _check_own_kernel(fields, source)
    return OSSpec(dispname, method, fields)


def _check_own_kernel(fields: dict[str, str], source: str) -> None:
    """A live OS with its own kernel needs that kernel's initramfs, and the other way round."""
    if fields["kernel"] and not fields["initrd"]:
        raise ConfigError(
            source,
            "initrd",
            "missing; with kernel the client boots the OS's own kernel, and its initramfs "
            "mounts the squashfs: add initrd (e.g. 'initrd: initrd.img'), or drop kernel to "
            "run the squashfs on the phase-1 kernel",
        )
    if fields["initrd"] and not fields["kernel"]:
        raise ConfigError(
            source,
            "kernel",
            "missing; initrd is the initramfs of the OS's own kernel: add kernel "
            "(e.g. 'kernel: vmlinuz'), or drop initrd",
        )
    if fields["cmdline"] and not fields["kernel"]:
        raise ConfigError(
            source,
            "cmdline",
            "is for the OS's own kernel, and there is none: add kernel and initrd, or drop "
            "cmdline (the phase-1 kernel keeps its own command line)",
        )


def _as_mapping(data: object, source: str) -> dict:
    example = "dispname: Debian 12\nmethod: kexec\nkernel: vmlinuz\ninitrd: initrd.img"
    if data is None:
        raise ConfigError(
            source,
            "",
            f"the file is empty; it needs at least a method, e.g.:\n{example}",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            "",
            f"expected a mapping of keys, got {describe(data)}; write one key per line, "
            f"e.g.:\n{example}",
        )
    return data


def _method_of(data: dict, source: str) -> str:
    method = _as_string(data.get("method"), COMMON_KEYS["method"], source)
    if method is None:
        raise ConfigError(
            source,
            "method",
            f"missing; it says how the client starts the OS, one of {', '.join(METHODS)}; "
            f"{write_eg('method: kexec')}",
        )
    if method not in METHODS:
        raise _unknown_method(method, source)
    return method


# Keys that an OS folder written for an earlier release may still use.
_RENAMED = {"device": "target"}


def _renamed_keys(data: dict, source: str) -> dict:
    renamed = dict(data)
    for old, new in _RENAMED.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise ConfigError(
                source, old, f"{old!r} is the old name of {new!r} and both are set; keep {new!r}"
            )
        renamed[new] = renamed.pop(old)
    return renamed


def _refuse_unknown_keys(data: dict, method: str, source: str) -> None:
    keys = {**COMMON_KEYS, **method_keys(method)}
    for name in data:
        if name not in keys:
            owners = [m for m in METHODS if name in {k.name for k in _METHOD_KEYS[m]}]
            belongs = f"; it belongs to method {owners[0]}" if owners else ""
            raise ConfigError(
                source,
                str(name),
                f"unknown key {str(name)!r} for method {method}"
                f"{did_you_mean(name, keys)}{belongs}; method {method} knows: "
                f"{', '.join(keys)}; fix the spelling or remove it",
            )


def _dispname_of(
    data: dict, folder: Path | None, source: str, default_dispname: str | None
) -> str:
    dispname_key = COMMON_KEYS["dispname"]
    dispname = _as_string(data.get("dispname"), dispname_key, source)
    if dispname is None:
        dispname = default_dispname
    if dispname is None:
        raise ConfigError(
            source,
            "dispname",
            f"missing; it is the OS's name in the client menu: "
            f"{write_eg(f'dispname: {dispname_key.example}')}",
        )
    return _check_value(dispname, dispname_key, folder, source)


def _field(data: dict, key: KeyDoc, method: str, folder: Path | None, source: str) -> str:
    """The value of the method's key `key`, checked, its default when not given."""
    value = _as_string(data.get(key.name), key, source)
    if value is None:
        if key.required:
            raise ConfigError(
                source,
                key.name,
                f"missing; method {method} needs it: {key.doc} "
                f"{write_eg(f'{key.name}: {key.example}')}",
            )
        value = key.default or ""
    return _check_value(value, key, folder, source)


def parse_os_config(
    data: object,
    folder: Path | None,
    source: str = CONFIG_NAME,
    default_dispname: str | None = None,
) -> OSSpec:
    """Validate a safe_load'ed config.yaml of the OS in `folder`; ConfigError if wrong.

    `default_dispname` (usually the folder's name) stands in for a missing dispname.
    Without a folder only the form of file keys is checked.
    """
    return _validate(data, None if folder is None else Path(folder), source, default_dispname)


def load_os_config(folder: Path, default_dispname: str | None = None) -> OSSpec:
    """Read and validate `folder`/config.yaml."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    hint = (
        "the folder does not exist; add the OS with `boottorrentctl add-os NAME DIR`"
        if not folder.is_dir()
        else 'create it with at least dispname and method (e.g. "method: kexec" with '
        "kernel and initrd), or add the OS with `boottorrentctl add-os NAME DIR`"
    )
    return _validate(read_yaml_file(path, hint), folder, str(path), default_dispname)


def render_os_config(
    values: dict[str, str],
    folder: Path | None = None,
    default_dispname: str | None = None,
) -> str:
    """A config.yaml for CLI-style `values` ({"method": "kexec", "kernel": ...}).

    The values are validated as a loaded file would be; file keys are checked against
    `folder` when it is given, else only for their form. The text lists every key of the
    method, each with its doc as a comment, defaults filled in.
    """
    spec = _validate(
        dict(values), None if folder is None else Path(folder), CONFIG_NAME, default_dispname
    )
    lines = comment(
        "BootTorrent OS folder config: how the clients start the files in this folder "
        "once they have downloaded them."
    )
    body = {"dispname": spec.dispname, "method": spec.method, **spec.fields}
    for name, key in {**COMMON_KEYS, **method_keys(spec.method)}.items():
        lines.append("")
        doc = key.doc
        if key.choices:
            doc += " One of: " + ", ".join(key.choices) + "."
        lines.extend(comment(doc))
        lines.append(f"{name}: {yaml_scalar(body[name])}")
    return "\n".join(lines) + "\n"
