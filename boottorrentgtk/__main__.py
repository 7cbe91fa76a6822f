import sys

from boottorrentgtk.app import main

sys.exit(main())
