"""boottorrentd-tracker: the boot swarm's own HTTP BitTorrent tracker, a child program.

`python3 -m boottorrentd.tracker` is run by the session (session/children/tracker.py) as
its supervised child "tracker", as the unprivileged user, so that installing BootTorrent
brings in no tracker service of another package (Debian's opentracker starts its own
unit at install and announces every 30 minutes). It speaks BEP 3 announces with BEP 23
compact peer lists and BEP 48 scrapes, tracks only the library's torrents (a whitelist
file it rereads on SIGHUP), hands a client up to 200 peers in one announce whatever
numwant it sends (aria2c always sends 50; 0 still means none), and forgets a peer that
missed a few announce intervals, and at least ten minutes (libtorrent, the server's
seed, announces only every five).
"""
