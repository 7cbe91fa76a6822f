"""boottorrentd: the BootTorrent system daemon."""

__version__ = "0.1.0"
