"""boottorrentd-ltseed: the libtorrent seed engine, a child program of the daemon.

It runs as its own supervised process (`python3 -m boottorrentd.ltseed`), so that
libtorrent never runs inside the D-Bus daemon: a crash here costs a restart of the seed,
not the bus name. The daemon drives it over a Unix socket (protocol.py); engine.py is the
libtorrent session, __main__.py the program around it.
"""
