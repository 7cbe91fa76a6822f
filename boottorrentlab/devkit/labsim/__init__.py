"""A lab of N simulated machines booting from the real daemon, for scale tests.

Each machine is a network namespace on one bridge with a shaped link, running the
phase-1 agent's steps on the host (boottorrentd/phase1/agent/init) instead of a kernel.
During the run a sampler reads the Manager's and one client's properties over D-Bus every
100 ms, counts the PropertiesChanged signals on the bus and the daemon's memory.
`LabSim(...).run()` returns a SimResult; `python -m boottorrentlab.devkit.labsim` prints it
as JSON. One module per job, each importing only those above it in this list:

    config.py    SimConfig, and the ports and addresses the servers and machines share
    results.py   MachineResult, SimResult: what a run measured, its checks, its JSON
    nshttp.py    HTTP from inside a machine's namespace, through this process's sockets
    machines.py  Machines: DHCP, boot script, phase-1, reports, bt-download, the check
    server.py    SimServer: one boot server, the daemon on a private bus in a namespace
    sampler.py   BusSampler, sample_bus: property reads timed, signals counted
    runner.py    LabSim: the LAN, the servers and the machines, one run
    __main__.py  the command line
"""

from .config import SimConfig
from .results import MachineResult, SimResult
from .runner import LabSim

__all__ = ["LabSim", "MachineResult", "SimConfig", "SimResult"]
