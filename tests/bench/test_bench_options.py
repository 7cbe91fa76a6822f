"""The benchmark's experiment options reach the daemon as keys of its configuration file.

No daemon runs here: these are the configurations the benchmark would write.
"""

from __future__ import annotations

import pytest

from bench.cli import build_parser, make_plan
from bench.daemon import daemon_config

HOST = "10.1.2.1"
DHCP = "10.1.2.200,10.1.2.250,1h"


def written_config(*argv: str) -> dict:
    plan = make_plan(build_parser().parse_args(list(argv)))
    return daemon_config(HOST, DHCP, plan.daemon)


def test_without_experiments_the_daemon_keeps_its_own_choices():
    config = written_config()
    assert config == {
        "boottorrent": {"version": 0, "host_ip": HOST},
        "dnsmasq": {"interface": "eth0", "dhcp_range": DHCP},
        "children": {"user": "nobody"},
        "http": {"port": 8080},
    }


def test_piece_size_sets_the_librarys_piece_length_in_bytes():
    assert written_config("--piece-size", "64K")["library"] == {"piece_length": 65536}


def test_transmission_settings_are_one_mapping_with_yaml_values():
    config = written_config("--transmission-setting", "cache-size-mb=64",
                            "--transmission-setting", "encryption=0",
                            "--transmission-setting", "utp-enabled=false")
    assert config["transmission"] == {"settings": {"cache-size-mb": 64, "encryption": 0,
                                                   "utp-enabled": False}}


def test_set_changes_any_key_and_wins_over_the_experiment_options():
    config = written_config("--transmission-setting", "encryption=0",
                            "--set", "transmission.settings.encryption=2",
                            "--set", "tracker.announce_interval=5",
                            "--set", "library.piece_length=auto")
    assert config["transmission"]["settings"] == {"encryption": 2}
    assert config["tracker"] == {"announce_interval": 5}
    assert config["library"] == {"piece_length": "auto"}


@pytest.mark.parametrize("option", ["--set", "--transmission-setting"])
def test_a_setting_without_a_value_is_refused(option, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([option, "encryption"])
    assert "is not KEY=VALUE" in capsys.readouterr().err
