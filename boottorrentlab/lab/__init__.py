"""`boottorrentctl lab`: a virtual lab of QEMU machines PXE-booting from a real daemon.

    config.py       the lab's numbers, LabError, the host's prerequisites, LabConfig
    network.py      the LAN (devkit, bridge in a namespace) with IPv6 router advertisements
    machines.py     QEMU machines (VM) on the LAN's taps
    view.py         the daemon seen over the bus, from a thread of its own
    watch.py        what the lab makes of what it sees: events, problems, outcome
    core.py         Lab: network, private bus, daemon and machines, torn down as one
    phase1cache.py  the phase-1 image kept between runs
    screen.py       progress lines, the live table and the summary
    cli.py          the command's arguments and one run; `make demo` (__main__.py)
"""

from boottorrentlab.devkit.shell import sh

from .config import TARGET_STAGES, LabConfig, LabError, missing_prerequisites
from .core import Lab
from .machines import VM
from .phase1cache import ensure_phase1
from .watch import Outcome

# sh: the benchmark runs its commands with it (bench/).
__all__ = ["TARGET_STAGES", "VM", "Lab", "LabConfig", "LabError", "Outcome", "ensure_phase1",
           "missing_prerequisites", "sh"]
