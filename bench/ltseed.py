"""Experiments only (bench/swarm.py --seed libtorrent[-super]): a libtorrent-rasterbar seed.

Seeds one torrent from a folder with Debian's python3-libtorrent, optionally in
super-seeding mode (BEP 16: the seed offers each peer one piece that no one else got
from it, so that it sends every piece about once before it sends any twice). This is
not part of the product: it tells whether another seed would bring the swarm closer to
the bound than the daemon's transmission-daemon.

    python3 bench/ltseed.py HOST PORT TORRENT SAVE_PATH [--super]

Prints "seeding" once the torrent runs; on SIGTERM prints the bytes it uploaded.
"""

from __future__ import annotations

import signal
import sys
import threading

import libtorrent as lt  # Debian: python3-libtorrent


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5) or (len(argv) == 5 and argv[4] != "--super"):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, torrent, save_path = argv[:4]
    session = lt.session({
        "listen_interfaces": f"{host}:{port}",
        "outgoing_interfaces": host,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False,
        # aria2c, the only client, speaks TCP BitTorrent.
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        # Every interested client is unchoked at once: a boot swarm has no free riders.
        "unchoke_slots_limit": -1,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    })
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    # seed_mode: the files are complete; pieces are hashed as they are first sent.
    params.flags |= lt.torrent_flags.seed_mode
    if len(argv) == 5:
        params.flags |= lt.torrent_flags.super_seeding
    handle = session.add_torrent(params)
    print("seeding", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        for alert in session.pop_alerts():
            print(f"alert: {alert.message()}", flush=True)
    print(f"uploaded {handle.status().total_payload_upload} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
