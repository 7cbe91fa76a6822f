"""One rule for OS names: the library, the config and the boot server agree."""

import pytest

from boottorrentd.config import ConfigError, load_yaml, parse_config
from boottorrentd.errors import InvalidArgument
from boottorrentd.names import check_name, name_fix

NAMES = ["debian12", "2024", "win.11_x-64", "a" * 64, "Debian12", "a b", "-x", ".x", "a/b",
         "", "a" * 65, "déb"]


@pytest.mark.parametrize("name", NAMES)
def test_the_config_accepts_exactly_the_names_the_library_accepts(name):
    try:
        check_name(name)
        library_ok = True
    except InvalidArgument:
        library_ok = False
    try:
        parse_config(load_yaml(f'boottorrent: {{version: 0, default_os: "{name}"}}', "b.yaml"))
        config_ok = True
    except ConfigError:
        config_ok = False

    assert config_ok == library_ok


def test_a_refused_name_says_the_rule_and_a_name_that_fits():
    assert name_fix("debian12") is None
    assert "starting with a letter or digit" in name_fix("Debian12")
    assert "(e.g. 'debian12')" in name_fix("Debian12")
    assert "(e.g. debian12)" in name_fix("a/b")


def test_the_library_refuses_a_bad_name_with_the_rule():
    with pytest.raises(InvalidArgument, match=r"invalid OS name 'Debian12': use 1-64 characters"):
        check_name("Debian12")
