"""An OS's boot spec, what phase-1's agent needs to fetch, verify, seed and start it: as
boot.json, and as boot.env for the busybox client, which cannot parse JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping

from boottorrentd.boot.render import shell_quote
from boottorrentd.config import Config
from boottorrentd.library.store import OSEntry


def _flag(value: bool) -> str:
    return "true" if value else "false"


def boot_json(entry: OSEntry, cfg: Config, *, server: str) -> dict:
    """What phase-1 needs to fetch, verify, seed and start `entry`.

    The aria2 options are keyed by aria2c's own option names with string values, so the
    busybox client turns each into `--name=value` without knowing what it means.
    """
    aria2 = cfg.aria2
    return {
        "name": entry.name,
        "dispname": entry.spec.dispname,
        "spec": entry.spec.boot_spec(),
        "infohash": entry.torrent.infohash,
        "size_bytes": entry.size_bytes,
        "torrent_url": f"http://{server}/torrents/{entry.name}.torrent",
        "seed_time": cfg.boottorrent.seed_time,
        "aria2": {
            "bt-enable-lpd": _flag(aria2.bt_enable_lpd),
            "enable-peer-exchange": _flag(cfg.swarm.peer_exchange),
            "enable-dht": _flag(aria2.enable_dht),
            "enable-dht6": _flag(aria2.enable_dht6),
            "check-integrity": _flag(aria2.check_integrity),
            "console-log-level": aria2.console_log_level,
            "bt-tracker-interval": str(cfg.tracker.announce_interval),
        },
        # {mac} is filled in by the client: this document is the same for every machine.
        "report_url": f"http://{server}/api/v1/clients/{{mac}}/events",
        "report_interval": cfg.client.report_interval,
        "allow_disk_writes": cfg.client.allow_disk_writes,
        **_image_bytes(entry),
    }


def _image_bytes(entry: OSEntry) -> dict[str, int]:
    """An image OS's image size: the client checks its disk holds it before it writes."""
    if entry.spec.method != "image":
        return {}
    image = tuple(entry.spec.fields["image"].split("/"))
    sizes = [f.length for f in entry.torrent.files if tuple(f.path) == image]
    return {"image_bytes": sizes[0] if sizes else 0}


_ENV_PREFIX = "BT"


def _env_value(value: object, name: str) -> str:
    if isinstance(value, bool):
        return _flag(value)
    if value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(f"{name}: boot.env has no form for {type(value).__name__} values")


def _flatten(prefix: str, data: Mapping, out: dict[str, str]) -> None:
    for key, value in data.items():
        name = f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(key)).upper()}"
        if isinstance(value, Mapping):
            _flatten(name, value, out)
            continue
        if name in out:
            # Keys differing only in punctuation or case would overwrite each other.
            raise ValueError(f"boot.env: two keys become {name}")
        out[name] = _env_value(value, name)


def boot_env(entry: OSEntry, cfg: Config, *, server: str) -> str:
    """`boot_json` as shell assignments, for the busybox client, which cannot parse JSON.

    Every key of boot.json becomes BT_<KEY> (nested ones BT_<KEY>_<SUBKEY>, e.g.
    BT_SPEC_KERNEL, BT_ARIA2_BT_ENABLE_LPD), every value a single-quoted word, so that
    `. boot.env` runs nothing. BT_ARIA2_OPTS adds the aria2 options as `--name=value`
    arguments, ready to be split into words.
    """
    doc = boot_json(entry, cfg, server=server)
    values: dict[str, str] = {}
    _flatten(_ENV_PREFIX, doc, values)
    opts = []
    for key, value in doc["aria2"].items():
        text = _env_value(value, key)
        if not text or any(ch.isspace() for ch in text + key):
            # The option list is split on whitespace by the client.
            raise ValueError(f"aria2 option {key}={text!r} cannot be passed as one word")
        opts.append(f"--{key}={text}")
    if f"{_ENV_PREFIX}_ARIA2_OPTS" in values:
        raise ValueError(f"boot.env: {_ENV_PREFIX}_ARIA2_OPTS is taken by an aria2 option")
    values[f"{_ENV_PREFIX}_ARIA2_OPTS"] = " ".join(opts)
    lines = ["# BootTorrent boot spec for phase-1; read it with: . ./boot.env"]
    lines += [f"{name}={shell_quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"
