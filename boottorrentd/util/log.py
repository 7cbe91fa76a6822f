"""Logging: to the journal when there is one (structured fields), else to stderr."""

import importlib.util
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
    # systemd-journal-send with no socket is silent, so only pick it when one exists. The
    # bindings are optional (the systemd extra; Debian's python3-systemd): without them
    # stderr still reaches the journal under systemd, only without the structured fields.
    if os.path.exists(JOURNAL_SOCKET) and importlib.util.find_spec("systemd") is not None:
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{IDENTIFIER}: %(levelname)s: %(message)s"))
    root.handlers[:] = [handler]
