"""Which edits of the configuration a running session takes at once, and which need it
restarted: config/changes.py, a pure function of two configurations."""

import dataclasses

from boottorrentd.config import parse_config
from boottorrentd.config.changes import APPLY, Apply, apply_live, diff, keys

BASE = {
    "boottorrent": {"version": 0, "host_ip": "10.20.0.1", "default_os": "tiny"},
    "dnsmasq": {"interface": "bt0", "dhcp_range": "10.20.0.50,10.20.0.150,12h"},
}


def config(**sections: dict):
    data = {name: dict(values) for name, values in BASE.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, "test.yaml")


def test_every_key_of_the_configuration_says_when_it_applies():
    assert set(APPLY) == set(keys(config()))


def test_the_menu_the_timeout_and_the_seed_time_apply_live():
    new = config(boottorrent={"timeout": 5, "display_oss": ["tiny", "big"], "seed_time": 0})

    changes = diff(config(), new)

    assert changes.live == ("boottorrent.display_oss", "boottorrent.timeout",
                            "boottorrent.seed_time")
    assert changes.restart == ()


def test_the_network_and_the_ports_need_a_restart():
    new = config(boottorrent={"host_ip": "10.30.0.1"},
                 dnsmasq={"interface": "bt1", "dhcp_range": "10.30.0.50,10.30.0.60"},
                 http={"port": 8081}, seeder={"peer_port": 51421})

    changes = diff(config(), new)

    assert changes.live == ()
    assert changes.restart == ("boottorrent.host_ip", "dnsmasq.interface",
                               "dnsmasq.dhcp_range", "seeder.peer_port", "http.port")


def test_an_unchanged_file_is_no_change():
    assert not diff(config(), config())


def test_a_running_session_takes_only_the_live_keys():
    running = config()
    new = config(boottorrent={"timeout": 5}, dnsmasq={"interface": "bt1"})

    merged = apply_live(running, new)

    assert merged.boottorrent.timeout == 5
    assert merged.dnsmasq.interface == "bt0"
    assert diff(merged, new).restart == ("dnsmasq.interface",)
    assert diff(merged, new).live == ()


def test_keys_tied_by_a_rule_to_a_restart_key_need_a_restart_too():
    # rules.py: no tracker needs local peer discovery; the two must change together.
    assert APPLY["aria2.bt_enable_lpd"] is Apply.RESTART
    assert APPLY["tracker.kind"] is Apply.RESTART
    with_lpd = config(tracker={"kind": "none"}, aria2={"bt_enable_lpd": True})
    assert dataclasses.asdict(apply_live(with_lpd, config())) == dataclasses.asdict(with_lpd)
