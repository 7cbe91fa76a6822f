"""Finding the programs the daemon runs: boottorrentd.util.programs."""

from __future__ import annotations

import pytest

from boottorrentd.errors import InvalidArgument
from boottorrentd.util.programs import find_program, program_path


def _program(folder, name):
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_program_on_path_is_found(tmp_path, monkeypatch):
    program = _program(tmp_path, "boottorrent-test-tool")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_program("boottorrent-test-tool", "some-package") == str(program)


def test_the_sbin_folders_are_searched_when_path_lacks_them(monkeypatch):
    # sh is in /bin or /usr/bin on every Debian system; an empty PATH must still find it.
    monkeypatch.setenv("PATH", "")
    assert program_path("sh") is not None


def test_path_comes_before_the_standard_folders(tmp_path, monkeypatch):
    program = _program(tmp_path, "sh")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert program_path("sh") == str(program)


def test_a_missing_program_is_none():
    assert program_path("boottorrent-no-such-program") is None


def test_a_missing_program_names_the_package_to_install():
    with pytest.raises(InvalidArgument, match=r"boottorrent-no-such-program is not installed; "
                                              r"install it with 'apt install some-package'"):
        find_program("boottorrent-no-such-program", "some-package")
