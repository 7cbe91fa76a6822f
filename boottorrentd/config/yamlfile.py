"""YAML in and out: strict loading (a key given twice is an error), file reading with
errors that say how to fix them, and scalars written so that YAML reads them back."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from boottorrentd.errors import ConfigError

DEFAULT_PATH = Path("/etc/boottorrent/boottorrent.yaml")
EXAMPLE_PATH = Path("/usr/share/doc/boottorrent/boottorrent.yaml")
DEFAULT_SOURCE = "boottorrent.yaml"


class _DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice is an error.

    Plain YAML keeps the last of two equal keys, so a second `dnsmasq:` section would
    silently discard the first one's settings.
    """


def _construct_mapping_once(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # construct_mapping reports the unhashable key with its position
        if first is not None:
            raise _DuplicateKeyError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} a second time (first on line {first.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once
)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def load_yaml(text: str, source: str) -> object:
    """Parse YAML like yaml.safe_load; syntax errors become ConfigErrors with line and column."""
    try:
        # _StrictLoader is a SafeLoader: no Python objects are built from the text.
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKeyError as exc:
        raise ConfigError(
            source, "", f"{_where(exc)}{exc.problem}; keep only one of them (merge their keys)"
        ) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        what = f"{problem} ({context})" if context else problem
        raise ConfigError(
            source,
            "",
            f"{_where(exc)}invalid YAML: {what}; fix the syntax there (indent keys under their "
            "section with spaces, not tabs, and quote values that contain ': ' or ' #')",
        ) from None


def read_yaml_file(path: Path, missing_hint: str) -> object:
    """Read and safe-load a YAML file; every failure is a ConfigError with its fix
    (`missing_hint` says what to do when the file does not exist)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", f"no such file; {missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory; give the path of the YAML file") from None
    except PermissionError:
        raise ConfigError(
            source, "", "cannot read it: permission denied; make it readable by the daemon"
        ) from None
    except NotADirectoryError:
        raise ConfigError(
            source, "", "a part of its path is a file, not a folder; give the right path"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:  # a symlink loop, a name too long, a disk error
        raise ConfigError(source, "", f"cannot read it: {exc.strerror or exc}") from None
    return load_yaml(text, source)


_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:+@=-]*")


def yaml_scalar(value: object) -> str:
    """Render a value as YAML (flow style for lists and mappings), quoting strings only
    when plain YAML would misread them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{yaml_scalar(k)}: {yaml_scalar(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    # A JSON string is a valid double-quoted YAML scalar.
    return json.dumps(text, ensure_ascii=False)
