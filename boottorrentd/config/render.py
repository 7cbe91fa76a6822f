"""The configuration written out: as plain data, and as the commented default file that
the package ships (data/boottorrent.yaml) and `--print-default-config` prints."""

import dataclasses
import textwrap
from typing import Any

from boottorrentd.config.legacy import RENAMED
from boottorrentd.config.schema import expected, hints, unwrap_optional
from boottorrentd.config.sections import Config
from boottorrentd.config.yamlfile import DEFAULT_PATH, yaml_scalar


def comment(text: str, indent: str = "", width: int = 78) -> list[str]:
    """`# `-prefixed lines of `text`, wrapped to `width` columns.

    A blank line in `text` separates paragraphs, a single newline starts a new line.
    """
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if lines:
            lines.append(f"{indent}#")
        for part in paragraph.split("\n"):
            # Names such as download-dir or phase-1 stay whole.
            wrapped = textwrap.wrap(
                " ".join(part.split()), width - len(indent) - 2, break_on_hyphens=False
            )
            lines.extend(f"{indent}# {line}" for line in wrapped)
    return lines


def config_to_dict(cfg: Config) -> dict:
    """The configuration as plain data, shaped like the YAML file."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        out[section.name] = {
            f.name: list(v) if isinstance(v := getattr(values, f.name), tuple) else v
            for f in dataclasses.fields(values)
        }
    return out


def key_comment(f: dataclasses.Field, tp: Any) -> str:
    """The text above a key in the default file (and beside it in the manual page)."""
    meta = f.metadata
    doc = meta["doc"]
    base, _optional = unwrap_optional(tp)
    if meta["choices"] and base is str:
        doc += " One of: " + ", ".join(meta["choices"]) + "."
    elif meta["minimum"] is not None or meta["maximum"] is not None:
        takes = expected(base, meta)
        doc += " " + takes[0].upper() + takes[1:] + "."
    # A string's doc gives its example in its own words.
    if f.default is None or (meta["example"] != f.default and base is not str):
        doc += f"\nExample: {f.name}: {yaml_scalar(meta['example'])}"
    return doc


def _renamed() -> str:
    return ", ".join(
        f"{old_section}.{old_key} as {new_section}.{new_key}"
        for (old_section, old_key), (new_section, new_key) in RENAMED.items()
    )


_HEADER = (
    f"BootTorrent daemon configuration ({DEFAULT_PATH}).\n\n"
    "boottorrentd reads this file when it starts. It is a superset of the original "
    "BootTorrent project's Boottorrent.yaml: such a file works here unchanged (it reads "
    f"{_renamed()}). Every key below is shown with its default value; a key or a whole "
    "section left out takes that default, except boottorrent.version, which is required. "
    "Booleans are true or false.\n\n"
    "Print this text again with `boottorrentd --print-default-config`."
)


def default_config_text() -> str:
    """The commented default configuration file, generated from the dataclasses."""
    lines = comment(_HEADER)
    for section in dataclasses.fields(Config):
        cls = hints(Config)[section.name]
        lines.append("")
        lines.extend(comment(section.metadata["doc"]))
        lines.append(f"{section.name}:")
        key_hints = hints(cls)
        for i, f in enumerate(dataclasses.fields(cls)):
            if i:
                lines.append("")
            lines.extend(comment(key_comment(f, key_hints[f.name]), indent="  "))
            lines.append(f"  {f.name}: {yaml_scalar(f.default)}")
    return "\n".join(lines) + "\n"
