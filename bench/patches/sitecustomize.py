"""Experiments only: changes to the daemon for one benchmark run, without touching the product.

bench/swarm.py starts the daemon with this folder on PYTHONPATH when an experiment option
asks for it; Python imports this module at startup, before the daemon's own code. Each
change applies only when its variable is set:

- BENCH_PIECE_LENGTH=BYTES (--piece-size): the piece length of the torrents the daemon
  makes, instead of torrent.piece_length_for()'s choice.
- BENCH_TRANSMISSION_SETTINGS=JSON (--transmission-setting): merged into the settings.json
  the Seeder renders for transmission-daemon.
- BENCH_NO_TRANSMISSION_SEED=1 (--seed aria2c): transmission runs but never starts a
  torrent, so that another seed can stand in for it.
"""

import json
import os

if os.environ.get("BENCH_PIECE_LENGTH"):
    import boottorrentd.library.torrent as _torrent

    def _fixed(total_size: int, _length: int = int(os.environ["BENCH_PIECE_LENGTH"])) -> int:
        return _length

    _torrent.piece_length_for = _fixed

if os.environ.get("BENCH_TRANSMISSION_SETTINGS") or os.environ.get("BENCH_NO_TRANSMISSION_SEED"):
    from typing import Any

    import boottorrentd.session.children.transmission as _transmission

    _extra: dict[str, Any] = json.loads(os.environ.get("BENCH_TRANSMISSION_SETTINGS") or "{}")
    _render = _transmission.Seeder._render_settings

    def _render_settings(self: Any) -> dict[str, Any]:
        return {**_render(self), **_extra}

    _transmission.Seeder._render_settings = _render_settings  # type: ignore[method-assign]

    if os.environ.get("BENCH_NO_TRANSMISSION_SEED"):
        async def _no_sync(self: Any) -> None:
            return None

        _transmission.Seeder._sync_locked = _no_sync  # type: ignore[method-assign]
