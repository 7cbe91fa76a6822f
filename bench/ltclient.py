"""Experiment: one lab client that downloads with libtorrent instead of aria2c.

    python -m bench.ltclient TORRENT_URL DIR ADDRESS [UNCHOKE_SLOTS]

Downloads into DIR from the torrent at TORRENT_URL, listening on ADDRESS:6881 (the port
aria2c uses in the agent), writes DIR/complete with the time (seconds since the epoch)
the last piece passed its hash check, then seeds until it is terminated. It answers one
question the aria2c client cannot: how near the bound a swarm of clients that unchoke
more than aria2c's fixed 3+1 peers comes (`--modes lt-client`). Not the product's client.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
from pathlib import Path

import libtorrent as lt

PORT = 6881


def main(argv: list[str]) -> int:
    url, folder, address = argv[:3]
    slots = int(argv[3]) if len(argv) > 3 else 8
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as answer:
        metainfo = answer.read()
    session = lt.session({
        "listen_interfaces": f"{address}:{PORT}",
        "outgoing_interfaces": address,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
        "enable_natpmp": False, "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "choking_algorithm": lt.choking_algorithm_t.fixed_slots_choker,
        "unchoke_slots_limit": slots,
        "alert_mask": 0,
    })
    everyone = lt.ip_filter()
    everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    session.set_peer_class_filter(everyone)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(metainfo))
    params.save_path = str(dest)
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    handle = session.add_torrent(params)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    complete = dest / "complete"
    while not stop:
        if not complete.exists() and handle.status().is_seeding:
            complete.write_text(f"{time.time():.3f}\n")
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
