"""What the lab, the tests and the benchmark build on, one module per job.

    bus.py      PrivateBus: a dbus-daemon with the system bus's policy, just for a run
    daemon.py   DaemonProcess: boottorrentd started, READY=1 awaited, stopped or killed;
                DaemonOnBus: it on a private bus in a namespace, driven by boottorrentctl
    lan.py      Lan, Netns: a virtual LAN of namespaces, veths and taps in a random 10.x.y.0/24
    files.py    sha256: what a copy hashes to
    labsim/     LabSim: N simulated machines booting from the real daemon (tests/scale)
    shell.py    sh: a command whose failure says what failed and why
"""
