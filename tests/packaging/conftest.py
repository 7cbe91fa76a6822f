"""The packaging tests: make deb in a Debian trixie root, and the package in a fresh
trixie system booted with systemd-nspawn. Root only; several minutes when cold."""

import os
import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packaging: builds the Debian package and tests it in a booted trixie "
        "container (root, debootstrap, systemd-nspawn; minutes)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    reason = ""
    if os.geteuid() != 0:
        reason = "the packaging tests need root (debootstrap, systemd-nspawn)"
    elif missing:
        reason = (f"missing {', '.join(missing)}: apt-get install debootstrap "
                  "systemd-container (make apt does)")
    for item in items:
        if "packaging" in item.keywords and reason:
            item.add_marker(pytest.mark.skip(reason=reason))
