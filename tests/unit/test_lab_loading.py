"""boottorrentctl loads the lab (QEMU, namespaces, the demo OS builder) only for `lab`."""

import subprocess
import sys

from boottorrentctl.cli import build_parser


def test_importing_the_cli_does_not_import_the_lab():
    # A fresh interpreter: this one may have imported the lab for other tests.
    probe = ("import sys, boottorrentctl.cli; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'boottorrentlab'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_the_command_list_names_the_lab():
    assert "lab" in build_parser().format_help()


def test_lab_help_is_the_labs_own_parser_with_all_its_options():
    result = subprocess.run([sys.executable, "-m", "boottorrentctl.cli", "lab", "--help"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: boottorrentctl lab")
    for option in ("--clients", "--os", "--marker", "--keep", "--timeout", "--memory",
                   "--seed-time", "--phase1", "--rebuild-phase1"):
        assert option in result.stdout, option
