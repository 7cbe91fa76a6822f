"""The engine that turns nested frozen dataclasses into a validating parser.

A section is a frozen dataclass whose fields are made with `key()`: the field's type, its
default and its metadata (doc, required, range, choices, check) are all the parser, the
commented default file and the manual page need, so none of them can drift from the
others. Supported key types: bool, int, str, tuple[str, ...] (a list of names),
Mapping[str, Any] (settings by name), `int | str` (a number, or one of `choices`), and
any of these `| None`.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from boottorrentd.config.checks import Check
from boottorrentd.config.messages import describe, did_you_mean, write_eg
from boottorrentd.config.yamlfile import yaml_scalar
from boottorrentd.errors import ConfigError


def key(
    default: Any,
    doc: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
    unit: str = "",
    example: Any = None,
    check: Check | None = None,
) -> Any:
    """A config key: its default and everything the validator and the docs need."""
    meta = {
        "doc": doc,
        "required": required,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "unit": unit,
        "example": default if example is None else example,
        "check": check,
    }
    return field(default=default, metadata=meta)


def section_doc(doc: str, *, required: bool = False) -> dict[str, Any]:
    """The metadata of a section field of the whole configuration."""
    return {"doc": doc, "required": required}


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        # A union of types other than None (int | str) is parsed as one type.
        return (args[0] if len(args) == 1 else tp), optional
    return tp, False


def _is_word_or_int(base: Any) -> bool:
    return set(typing.get_args(base)) == {int, str}


def _int_text(meta: Mapping[str, Any]) -> str:
    text = "a whole number" + (f" of {meta['unit']}" if meta["unit"] else "")
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and high is not None:
        text += f" from {low} to {high}"
    elif low is not None:
        text += f", at least {low}"
    return text


def expected(base: Any, meta: Mapping[str, Any]) -> str:
    """What a key of type `base` takes, for 'expected ...' in messages and docs."""
    if base is bool:
        return "true or false"
    if base is int:
        return _int_text(meta)
    if _is_word_or_int(base):
        return " or ".join(meta["choices"]) + " or " + _int_text(meta)
    if typing.get_origin(base) is tuple:
        return "a list of OS names"
    if typing.get_origin(base) is Mapping:
        return "a mapping of names to values"
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    return "a string"


def example(name: str, meta: Mapping[str, Any]) -> str:
    return write_eg(f"{name}: {yaml_scalar(meta['example'])}")


@dataclass(frozen=True)
class _Key:
    """One key being parsed: its field, where it is and how to say it is wrong."""

    f: dataclasses.Field
    base: Any
    path: str
    source: str

    @property
    def name(self) -> str:
        """The key's name as the file wrote it (a seed's old name, see legacy.py)."""
        return self.path.rpartition(".")[2]

    def error(self, problem: str) -> ConfigError:
        return ConfigError(self.source, self.path, problem)

    def wrong(self, value: object, extra: str = "") -> ConfigError:
        meta = self.f.metadata
        return self.error(
            f"expected {expected(self.base, meta)}, got {describe(value)}{extra}; "
            f"{example(self.name, meta)}"
        )


def _as_int(k: _Key, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise k.wrong(value)
    low, high = k.f.metadata["minimum"], k.f.metadata["maximum"]
    if (low is not None and value < low) or (high is not None and value > high):
        raise k.wrong(value)
    return value


def _as_str(k: _Key, value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML read an unquoted number; say how to make it a string.
        raise k.error(
            f"expected {expected(k.base, k.f.metadata)}, got the number {value}; quote it: "
            f"write '{k.name}: \"{value}\"'"
        )
    if not isinstance(value, str):
        raise k.wrong(value)
    choices = k.f.metadata["choices"]
    if choices and value not in choices:
        raise k.wrong(value, did_you_mean(value, choices))
    return value


def _as_word_or_int(k: _Key, value: object) -> int | str:
    if isinstance(value, str):
        choices = k.f.metadata["choices"]
        if value not in choices:
            raise k.wrong(value, did_you_mean(value, choices))
        return value
    return _as_int(k, value)


def _as_names(k: _Key, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise k.wrong(value)
    for item in value:
        if not isinstance(item, str):
            raise k.error(
                f"expected a list of OS names, got the item {describe(item)}; write each "
                f"name as a string, e.g. '{k.name}: [debian12, \"2024\"]'"
            )
    return tuple(value)


def _as_mapping(k: _Key, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise k.wrong(value)
    for name in value:
        if not isinstance(name, str):
            raise k.error(
                f"expected names as keys, got {describe(name)}; quote it, "
                f"{example(k.name, k.f.metadata)}"
            )
    return dict(value)


def _typed(k: _Key, value: object) -> Any:
    """`value` if it has the key's type (and range, and choice), else a ConfigError."""
    if k.base is bool:
        if not isinstance(value, bool):
            raise k.wrong(value)
        return value
    if k.base is int:
        return _as_int(k, value)
    if k.base is str:
        return _as_str(k, value)
    if _is_word_or_int(k.base):
        return _as_word_or_int(k, value)
    if typing.get_origin(k.base) is tuple:
        return _as_names(k, value)
    if typing.get_origin(k.base) is Mapping:
        return _as_mapping(k, value)
    raise TypeError(f"{k.path}: the schema engine has no parser for {k.base}")


def convert(value: object, f: dataclasses.Field, tp: Any, path: str, source: str) -> Any:
    """The value of key `f` (type `tp`) at `path`, checked; ConfigError when wrong."""
    base, optional = unwrap_optional(tp)
    k = _Key(f, base, path, source)
    if value is None:
        if optional:
            return None
        raise k.wrong(value)
    value = _typed(k, value)
    check = f.metadata["check"]
    problem = check(value) if check else None
    if problem:
        raise k.error(problem)
    return value


def unknown(
    name: object, known: list[str], path: str, what: tuple[str, str], source: str
) -> ConfigError:
    """`what` names the key's kind and its section, e.g. ("key", "section dnsmasq")."""
    return ConfigError(
        source,
        path,
        f"unknown {what[0]} {str(name)!r}{did_you_mean(name, known)}; {what[1]} knows: "
        f"{', '.join(known)}; fix the spelling or remove it",
    )


def parse_section(
    cls: type, data: object, name: str, source: str, origins: dict[str, str]
) -> Any:
    """Section `name` of type `cls` from its YAML mapping. `origins` maps a key's dotted
    path to the path it was written at, when that differs (an old name)."""
    if data is None:
        # A section header whose keys are all commented out: take the defaults.
        data = {}
    if not isinstance(data, dict):
        first = dataclasses.fields(cls)[0]
        raise ConfigError(
            source,
            name,
            f"expected a mapping of keys, got {describe(data)}; indent its keys under it, "
            f'e.g. "{name}:" then "  {first.name}: {yaml_scalar(first.default)}"',
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            raise unknown(k, list(fields), f"{name}.{k}", ("key", f"section {name}"), source)
    types_ = hints(cls)
    values = {}
    for k, f in fields.items():
        path = f"{name}.{k}"
        if k not in data:
            if f.metadata["required"]:
                raise ConfigError(
                    source, path, f"missing; it is required: {example(k, f.metadata)}"
                )
            continue
        values[k] = convert(data[k], f, types_[k], origins.get(path, path), source)
    return cls(**values)
