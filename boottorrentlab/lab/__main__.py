"""`make demo`: python -m boottorrentlab.lab [--clients N] [--keep]."""

import sys

from .cli import demo

sys.exit(demo())
