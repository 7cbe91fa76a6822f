"""`pip install .` into a fresh venv, without Debian's Python packages, gives a daemon
that starts: pyproject.toml declares everything boottorrentd imports."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boottorrentd.config import default_config_text
from boottorrentlab.devkit.bus import PrivateBus
from boottorrentlab.devkit.daemon import DaemonProcess
from tests.conftest import MINIMAL_CONFIG, ROOT

pytestmark = pytest.mark.integration

# Not part of the source: what a checkout gathers while it is worked in and tested.
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".ruff_cache", ".mypy_cache")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("install")
    source = base / "boottorrent"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = base / "venv"
    # Made from the test venv's python it still is a venv of the base interpreter, and
    # without --system-site-packages it sees none of Debian's python3-* packages.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin/pip"), "install", "-q", str(source)], env=clean_env(),
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    # PYTHONPATH would put the checkout, not what pip installed, on the path.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NOTIFY_SOCKET")}
    return env | extra


def run(venv: Path, program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / program), *args], env=clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_the_venv_sees_no_debian_python_packages(venv):
    probe = run(venv, "python", "-c", "import sys; print(sys.path)")

    assert "dist-packages" not in probe.stdout


def test_the_installed_daemon_prints_its_default_configuration(venv):
    result = run(venv, "boottorrentd", "--print-default-config")

    assert result.returncode == 0, result.stderr
    assert result.stdout == default_config_text()


@pytest.mark.parametrize("program", ["boottorrentd", "boottorrentctl"])
def test_the_installed_programs_show_their_help(venv, program):
    result = run(venv, program, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {program}")


def test_the_installed_daemon_starts_without_the_systemd_bindings(venv, system_bus: PrivateBus,
                                                                  tmp_path):
    assert run(venv, "python", "-c", "import systemd").returncode != 0
    config = tmp_path / "boottorrent.yaml"
    config.write_text(MINIMAL_CONFIG)
    daemon = DaemonProcess(config, tmp_path / "state", tmp_path / "run")
    daemon.program = str(venv / "bin/boottorrentd")

    daemon.start(clean_env(DBUS_SYSTEM_BUS_ADDRESS=system_bus.address))  # until READY=1
    code, stderr = daemon.stop()

    assert code == 0, stderr
    assert "ready on org.boottorrent1" in stderr
