"""The seed's key names that now mean something beyond their section.

The seed's Boottorrent.yaml put settings where its one program read them: `dnsmasq.user`
was the user of every child, `aria2.enable_peer_exchange` PEX for the whole swarm. Such a
file keeps working: at load those keys move to the keys named for what they do, and a
message about one of them still names the key as the file wrote it.
"""

from boottorrentd.errors import ConfigError

# (section, key) as the seed wrote it -> (section, key) it is read as.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("dnsmasq", "user"): ("children", "user"),
    ("aria2", "enable_peer_exchange"): ("swarm", "peer_exchange"),
}


def translate(data: dict, source: str) -> tuple[dict, dict[str, str]]:
    """The file's sections with the old keys moved to their new places, and for each
    moved key its new dotted path -> the path the file wrote. `data` is left as it was.

    A section that is not a mapping is left alone for the parser to report.
    """
    out = dict(data)
    origins: dict[str, str] = {}
    for (old_section, old_key), (new_section, new_key) in RENAMED.items():
        old, new = out.get(old_section), out.get(new_section)
        if not isinstance(old, dict) or old_key not in old:
            continue
        if new is not None and not isinstance(new, dict):
            continue
        new = dict(new or {})
        if new_key in new:
            raise ConfigError(
                source,
                f"{old_section}.{old_key}",
                f"is the seed's name of {new_section}.{new_key}, which is set too; keep "
                f"only {new_section}.{new_key}",
            )
        old = dict(old)
        new[new_key] = old.pop(old_key)
        out[old_section], out[new_section] = old, new
        origins[f"{new_section}.{new_key}"] = f"{old_section}.{old_key}"
    return out, origins
