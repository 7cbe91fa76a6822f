"""`make demo`: the daemon on a private bus, a sample OS added, then status and list-os.

Runs as root on a fresh machine after `make deps`; touches nothing of the host's own
services and removes what it made.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from boottorrentd.config import default_config_text

from .harness import DaemonProcess, PrivateBus, venv_bin

SAMPLE_SIZE = 48 << 20


def make_sample_os(folder: Path) -> None:
    """A `bin` OS: a script and a disk image of pseudo-random bytes (the same every run)."""
    folder.mkdir(parents=True)
    hello = folder / "hello.sh"
    hello.write_text("#!/bin/sh\necho 'Hello from an OS delivered over BitTorrent'\n")
    hello.chmod(0o755)
    block = hashlib.sha256(b"boottorrent demo").digest() * (1 << 15)  # 1 MiB
    with open(folder / "rootfs.img", "wb") as f:
        for i in range(SAMPLE_SIZE // len(block)):
            f.write(hashlib.sha256(i.to_bytes(4, "big")).digest() + block[32:])
    (folder / "config.yaml").write_text(
        "dispname: Demo OS\nmethod: bin\nbin: hello.sh\nbinargs: \"\"\n")


def run(*cmd: str, env: dict[str, str]) -> None:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, env=env, check=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="boottorrent-demo-"))
    config = work / "etc/boottorrent.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(default_config_text())
    daemon = DaemonProcess(config, work / "state", work / "run")
    try:
        with PrivateBus() as bus:
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
            env.pop("NOTIFY_SOCKET", None)
            print(f"Private system bus: {bus.address}")
            daemon.start(env)
            print(f"boottorrentd is running (pid {daemon.process.pid}), state in {work / 'state'}")
            make_sample_os(work / "sample")
            ctl = venv_bin("boottorrentctl")
            run(ctl, "add-os", "demo", str(work / "sample"), env=env)
            run(ctl, "status", env=env)
            run(ctl, "list-os", env=env)
            run("busctl", f"--address={bus.address}", "tree", "org.boottorrent1", env=env)
            print("\nAnother tool reads the torrent the daemon made:")
            run("transmission-show", str(work / "state/torrents/demo.torrent"), env=env)
            code, _ = daemon.stop()
            print(f"\nboottorrentd stopped cleanly (exit {code}).")
            return code
    finally:
        if daemon.process is not None:
            daemon.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
