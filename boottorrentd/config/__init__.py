"""The daemon's configuration, /etc/boottorrent/boottorrent.yaml.

The file is a superset of the seed project's Boottorrent.yaml: a seed file loads
unchanged, its few keys that steer more than their section are read under the names of
what they do (legacy.py), and new settings live in new sections. The package is split by
job:

- yamlfile.py: where the file is, strict YAML loading, YAML scalars written back
- sections.py: the sections as frozen dataclasses, the single source of truth for the
  parser, the default file and the manual page
- schema.py: the engine that parses a section from its dataclass
- checks.py, dhcprange.py: checks of single values
- rules.py: rules across keys
- legacy.py: the seed's old key names
- messages.py: pieces of error messages, shared with the OSes' config.yaml (osspec)
- render.py: the configuration as data and as the commented default file

Every problem is a `ConfigError` naming the dotted key, what is wrong and how to fix it.
"""

import dataclasses
from pathlib import Path

from boottorrentd.config import legacy
from boottorrentd.config.checks import CONFIG_VERSION, check_single_line
from boottorrentd.config.dhcprange import DhcpRange, parse_dhcp_range
from boottorrentd.config.messages import describe, did_you_mean, write_eg
from boottorrentd.config.render import comment, config_to_dict, default_config_text, key_comment
from boottorrentd.config.rules import check_rules
from boottorrentd.config.schema import hints, parse_section, unknown
from boottorrentd.config.sections import (
    Aria2Section,
    BootSection,
    ChildrenSection,
    ClientSection,
    Config,
    DhcpSection,
    DnsmasqSection,
    HefurSection,
    HttpSection,
    LibrarySection,
    LoaderSection,
    NetworkSection,
    OpentrackerSection,
    SeederSection,
    SwarmSection,
    TrackerSection,
    TransmissionSection,
)
from boottorrentd.config.yamlfile import (
    DEFAULT_PATH,
    DEFAULT_SOURCE,
    EXAMPLE_PATH,
    load_yaml,
    read_yaml_file,
    yaml_scalar,
)
from boottorrentd.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "DEFAULT_PATH",
    "DEFAULT_SOURCE",
    "EXAMPLE_PATH",
    "Aria2Section",
    "BootSection",
    "ChildrenSection",
    "ClientSection",
    "Config",
    "ConfigError",
    "DhcpRange",
    "DhcpSection",
    "DnsmasqSection",
    "HefurSection",
    "HttpSection",
    "LibrarySection",
    "LoaderSection",
    "NetworkSection",
    "OpentrackerSection",
    "SeederSection",
    "SwarmSection",
    "TrackerSection",
    "TransmissionSection",
    "check_single_line",
    "comment",
    "config_to_dict",
    "default_config_text",
    "describe",
    "did_you_mean",
    "key_comment",
    "load_config",
    "load_yaml",
    "parse_config",
    "parse_dhcp_range",
    "read_yaml_file",
    "write_eg",
    "yaml_scalar",
]


def _check_top(data: object, source: str) -> dict:
    """`data` as the mapping of sections it must be."""
    if data is None:
        raise ConfigError(
            source,
            "",
            'the file is empty; it needs at least "boottorrent:" with "version: 0" under '
            "it (see `boottorrentd --print-default-config`)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            "",
            f"expected a mapping of sections (boottorrent:, dnsmasq:, ...), got "
            f"{describe(data)}; start from `boottorrentd --print-default-config`",
        )
    return data


def parse_config(data: object, source: str = DEFAULT_SOURCE) -> Config:
    """Validate a safe_load'ed configuration and build the Config; ConfigError if wrong."""
    data, origins = legacy.translate(_check_top(data, source), source)
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for name in data:
        if name not in sections:
            raise unknown(name, list(sections), str(name), ("section", "the file"), source)
    values = {}
    for name, f in sections.items():
        if name not in data:
            if f.metadata["required"]:
                raise ConfigError(
                    source,
                    name,
                    'missing; every config needs it: write "boottorrent:" and under it '
                    '"  version: 0"',
                )
            continue
        values[name] = parse_section(hints(Config)[name], data[name], name, source, origins)
    cfg = Config(**values)
    check_rules(cfg, source)
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate a configuration file."""
    source = str(path)
    data = read_yaml_file(
        path,
        f"create it, e.g. `cp {EXAMPLE_PATH} {source}` or "
        f"`boottorrentd --print-default-config > {source}`, and adjust it",
    )
    return parse_config(data, source)
