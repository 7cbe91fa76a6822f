"""Fixtures of the end-to-end tests: QEMU machines (TCG) PXE-boot from the real daemon.

Run them alone with `pytest -m e2e tests/e2e`. They need root, qemu-system-x86,
busybox-static, squashfs-tools, a kernel in /boot, and for the UEFI tests ovmf,
shim-signed, grub-efi-amd64-signed and sbsigntool (`make deps`). The phase-1 image is
the one `boottorrentctl lab` caches in /var/cache/boottorrent/lab, rebuilt when this tree's
builder or agent (or the kernel, or a package in it) changed; the target OSes are built
once per session. Every test gets its own lab (namespaces, bridge, private bus, daemon),
torn down after it. A failed test keeps its consoles and daemon log and prints where.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boottorrentd.phase1 import build as phase1
from boottorrentlab.lab import Lab, LabConfig, ensure_phase1, missing_prerequisites
from tests.conftest import world_readable_tmpdir
from tests.e2e import images

# Lines for the end-of-run summary (boot timings), appended by the tests.
TIMINGS: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: QEMU machines (TCG) boot over PXE from the "
                            "real daemon in network namespaces (root, minutes)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    problems = missing_prerequisites()
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
            if problems:
                item.add_marker(pytest.mark.skip(reason="; ".join(problems)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if TIMINGS:
        terminalreporter.section("e2e boot timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def phase1_image() -> Path:
    """The phase-1 image every test serves: the lab's cached build when its kernel, builder,
    agent and packages are those of this tree and host, else built again (~1 min)."""
    started = time.monotonic()
    folder = ensure_phase1(False, io.StringIO())
    manifest = phase1.read_manifest(folder.parent)
    assert manifest is not None
    size = manifest.vmlinuz["size"] + manifest.initrd["size"]
    TIMINGS.append(f"phase-1 image: {size / 1e6:.1f} MB (kernel {manifest.kernel_version}), "
                   f"ready in {time.monotonic() - started:.0f} s")
    return folder


@pytest.fixture(scope="session")
def oses() -> Iterator[dict[str, images.TargetOS]]:
    """The target OSes by name: kexec-a, kexec-b (a second kexec OS), bin, live,
    unsigned (kexec-a's kernel without its Secure Boot signature) and qemu."""
    parent = world_readable_tmpdir("bt-e2e-os-")
    built = [
        images.kexec_os(parent, "kexec-a", "BT-E2E-KEXEC-A-OK"),
        images.kexec_os(parent, "kexec-b", "BT-E2E-KEXEC-B-OK"),
        images.bin_os(parent, "bin", "BT-E2E-BIN-OK"),
        images.live_os(parent, "live", "BT-E2E-LIVE-OK"),
        images.unsigned_kexec_os(parent, "unsigned", "BT-E2E-UNSIGNED-OK"),
        images.qemu_os(parent, "qemu", "BT-E2E-QEMU-OK"),
    ]
    yield {t.name: t for t in built}
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def make_lab(request: pytest.FixtureRequest,
             phase1_image: Path) -> Iterator[Callable[..., Lab]]:
    """make_lab(LabConfig(...), memory_mb=...) -> a started Lab serving phase-1 (no
    session yet)."""
    labs: list[Lab] = []

    def make(config: LabConfig | None = None, *, memory_mb: int = 512) -> Lab:
        lab = Lab(config or LabConfig(), memory_mb=memory_mb)
        labs.append(lab)
        lab.start()
        lab.install_phase1(phase1_image)
        return lab

    yield make
    failed = request.node.stash.get(_FAILED, True)
    problems = []
    for lab in labs:
        problems += lab.close()
        lab.remove_files(keep_logs=failed)
        if failed:
            print(f"\nlab {lab.tag}: consoles and daemon log kept in {lab.workdir}")
    assert not problems, f"teardown problems: {problems}"
