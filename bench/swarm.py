"""The swarm benchmark: how long N machines take to get one OS, against the physical limit.

Run as root from the repository root (after `make deps`):

    .venv/bin/python -m bench.swarm --json out.json --plot out.png

One Linux bridge stands for the lab's switch. A server namespace runs the real daemon
(boottorrentd on a private D-Bus: `boottorrentctl add-os`, `boottorrentctl start`, so
the seed engine seeds and the daemon's own tracker runs), and N client namespaces are the lab
machines. Every link is shaped with `tc tbf` on both ends of its veth pair
(bench/network.py).

Modes, run back to back in one invocation (and in this order in every repeat), are in
bench/modes.py: `boottorrent` (the phase-1 agent's own download step), `unicast` (HTTP
from one server) and `multicast` (udpcast, when Debian's udpcast is installed).

Every boottorrent wave after the first meets a freshly restarted boot session (a new
seed process), unless --same-session: transmission 3.00 remembers an address that was a
complete peer and chokes a machine that comes back at that address until the seeder
notices and adds the torrent again (a few seconds and a check of the files), so later
waves on one session measure that recovery rather than the distribution.

A client's completion time counts from the moment all clients are started to the moment
its copy is complete (for bt-download: aria2c's log line for its last piece passing the
hash check, at millisecond resolution). T_all is the last client's. The limit is the
Kumar-Ross bound T* = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)) (bench/bounds.py);
unicast cannot beat N*F/u_s.

Experiments change the daemon only through its configuration (bench/daemon.py).
Everything a run creates (namespaces, bridge, daemon, bus, tmpfs) is removed on exit,
Ctrl-C included (bench/cli.py). The machine's other work makes the figures noisy: use
--repeat.
"""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
