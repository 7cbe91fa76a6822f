"""`python -m boottorrentd.config` prints the commented default configuration."""

import sys

from boottorrentd.config import default_config_text

sys.stdout.write(default_config_text())
