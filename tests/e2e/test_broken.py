"""An OS whose files no longer match its torrent: the client fails in words, never boots."""

import json
import os

from boottorrentlab.lab import LabConfig
from tests.e2e.helpers import BOOT_TIMEOUT


def test_a_corrupted_kernel_fails_verification_and_the_client_reports_why(make_lab, oses):
    good = oses["kexec-a"]
    lab = make_lab(LabConfig(default_os="broken", seed_time=0))
    lab.add_os("broken", good.folder)
    lab.start_session()
    lab.wait_for(lambda: any(s["name"] == "broken" and s["status"] == "seeding"
                             for s in lab.status()["seeding"]), 60, "the seed to verify its data")
    # In place (same inode, size and modification time) after the seed checked it, as bit
    # rot or a copy that keeps times would: transmission re-checks pieces of files whose
    # time changed (and then stops seeding them), so with the old time it serves bytes
    # that no longer match the torrent's piece hashes.
    kernel = lab.state_dir / "oss/broken/vmlinuz"
    before = kernel.stat()
    with open(kernel, "r+b") as f:
        f.write(bytes(range(256)) * (before.st_size // 256))
    os.utime(kernel, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert kernel.stat().st_size == before.st_size
    (vm,) = lab.boot(1)

    lab.wait_for(lambda: vm.stage == "failed", BOOT_TIMEOUT, "the client to report failed")

    listed = {c["mac"]: c for c in json.loads(lab.ctl("clients", "--json").stdout)}
    assert listed[vm.mac]["stage"] == "failed"
    error = listed[vm.mac]["error"]
    # bt-download's words for a piece that keeps failing its hash check, or for files
    # that fail the check after the download.
    assert "hash check" in error or "do not match the torrent" in error, error
    assert good.marker not in vm.console_text()
