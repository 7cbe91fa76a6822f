"""Logging: to the journal when there is one (structured fields), else to stderr."""

import logging
import os
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "boottorrentd"


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    handler: logging.Handler
    if os.path.exists(JOURNAL_SOCKET):
        # systemd-journal-send with no socket is silent, so only pick it when one exists.
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{IDENTIFIER}: %(levelname)s: %(message)s"))
    root.handlers[:] = [handler]
