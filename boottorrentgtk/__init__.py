"""boottorrent-gtk: a desktop window on the daemon's D-Bus API (org.boottorrent1).

A pure client: it imports nothing of the daemon but the names in boottorrentd.api, and
learns everything from the bus (ObjectManager, PropertiesChanged, OSProgress).
"""

APP_ID = "org.boottorrent.Gtk"
