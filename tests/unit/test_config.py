"""The daemon config: seed files load unchanged, every mistake names its key and the fix."""

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from boottorrentd.config import (
    BootSection,
    Config,
    ConfigError,
    config_to_dict,
    default_config_text,
    load_config,
    load_yaml,
    parse_config,
    parse_dhcp_range,
)
from boottorrentd.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests/data/seed"
MINIMAL = "boottorrent:\n  version: 0\n"


def parse_text(text: str) -> Config:
    return parse_config(load_yaml(text, "boottorrent.yaml"))


def test_the_seed_skeleton_loads_unchanged():
    cfg = load_config(SEED / "skel/Boottorrent.yaml")

    assert cfg.boottorrent == BootSection(
        version=0,
        display_oss=None,
        timeout=30,
        default_os=None,
        seed_time=30,
        host_ip="192.168.1.1",
    )
    assert cfg.dnsmasq.enable_dhcp is True
    assert cfg.dnsmasq.user is None
    assert cfg.dnsmasq.interface == "eth0"
    assert cfg.dnsmasq.bind_interfaces is True
    assert cfg.dnsmasq.dhcp_range == "192.168.1.50,192.168.1.150,12h"
    assert cfg.dnsmasq.enable_tftp is True
    assert (cfg.opentracker.enable, cfg.opentracker.port) == (True, 10001)
    assert cfg.transmission.rpc_port == 9091
    assert cfg.transmission.dht_enabled is False
    assert cfg.transmission.lpd_enabled is False
    assert cfg.aria2.bt_enable_lpd is False
    assert cfg.aria2.enable_dht is False
    assert cfg.aria2.check_integrity is False
    assert cfg.aria2.enable_peer_exchange is True
    assert cfg.tracker_kind == "auto"
    assert cfg.tracker_port == 10001


def test_the_seed_test_environment_loads_unchanged():
    cfg = load_config(SEED / "envtest/Boottorrent.yaml")

    assert cfg.boottorrent.display_oss == ("testos", "freedos")
    assert cfg.boottorrent.default_os == "testos"
    assert cfg.boottorrent.seed_time == 0
    assert cfg.boottorrent.timeout == 30
    assert cfg.dnsmasq.interface == "vboxnet0"
    assert cfg.dnsmasq.bind_interfaces is False
    assert cfg.dnsmasq.user == "shreyansh"
    assert cfg.hefur.enable is True
    assert cfg.aria2.bt_enable_lpd is True
    assert cfg.aria2.check_integrity is True
    assert cfg.tracker_kind == "hefur"
    assert cfg.tracker_port == 10001


def test_a_minimal_file_takes_every_default():
    assert parse_text(MINIMAL) == Config(boottorrent=BootSection())


def test_a_section_with_all_keys_commented_out_takes_its_defaults():
    assert parse_text(MINIMAL + "dnsmasq:\n  # user: nobody\n").dnsmasq.user is None


def test_the_default_text_round_trips_to_the_default_config():
    cfg = parse_config(yaml.safe_load(default_config_text()))

    assert cfg == Config(boottorrent=BootSection(version=0))


def test_the_default_text_documents_every_key_in_the_seeds_order():
    text = default_config_text()
    sections = [line[:-1] for line in text.splitlines() if line and line[0].isalpha()]

    assert sections[:6] == [
        "boottorrent",
        "dnsmasq",
        "opentracker",
        "aria2",
        "hefur",
        "transmission",
    ]
    defaults = config_to_dict(Config(boottorrent=BootSection()))
    assert set(sections) == set(defaults)
    for section, keys in defaults.items():
        block = text.split(f"\n{section}:\n", 1)[1].split("\n\n#", 1)[0]
        for key in keys:
            assert f"\n  {key}: " in "\n" + block
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text.startswith("# ")


def test_the_shipped_config_file_is_the_generated_default():
    assert (ROOT / "data/boottorrent.yaml").read_text() == default_config_text()


def test_python_m_boottorrentd_config_prints_the_default_text():
    out = subprocess.run(
        [sys.executable, "-m", "boottorrentd.config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert out == default_config_text()


def test_config_to_dict_has_the_files_shape_and_parses_back():
    cfg = load_config(SEED / "envtest/Boottorrent.yaml")
    data = config_to_dict(cfg)

    assert data["boottorrent"]["display_oss"] == ["testos", "freedos"]
    assert data["hefur"] == {"enable": True, "port": 10001}
    assert parse_config(yaml.safe_load(yaml.safe_dump(data))) == cfg


def test_the_effective_tracker_follows_the_seed_switches_and_tracker_kind():
    def kind(extra: str) -> tuple[str, int]:
        cfg = parse_text(MINIMAL + extra)
        return cfg.tracker_kind, cfg.tracker_port

    assert kind("") == ("auto", 10001)
    assert kind("hefur: {enable: true, port: 6969}") == ("hefur", 6969)
    assert kind("tracker: {kind: hefur}\nopentracker: {port: 7000}") == ("hefur", 7000)
    assert kind("tracker: {kind: opentracker}") == ("opentracker", 10001)
    assert kind("opentracker: {enable: false}\naria2: {bt_enable_lpd: true}") == ("none", 10001)
    assert kind("tracker: {kind: none}\naria2: {bt_enable_lpd: true}") == ("none", 10001)


def test_default_os_may_be_missing_at_load_time_even_with_a_timeout():
    cfg = parse_text(MINIMAL.replace("0\n", "0\n  timeout: 10\n"))

    assert cfg.boottorrent.default_os is None


def test_optional_keys_may_be_null():
    cfg = parse_text(
        "boottorrent: {version: 0, display_oss: null, default_os: null}\ndnsmasq: {user: null}"
    )

    assert cfg.boottorrent.display_oss is None
    assert cfg.dnsmasq.user is None


def test_proxy_dhcp_accepts_a_subnet_alone():
    cfg = parse_text(MINIMAL + 'dhcp: {mode: proxy}\ndnsmasq: {dhcp_range: "192.168.1.0"}')

    assert cfg.dhcp_range.start == ipaddress.IPv4Address("192.168.1.0")
    assert cfg.dhcp_range.end is None


@pytest.mark.parametrize(
    ("text", "start", "end", "netmask", "lease"),
    [
        ("10.0.0.5,10.0.0.9", "10.0.0.5", "10.0.0.9", None, None),
        ("10.0.0.5,10.0.0.9,infinite", "10.0.0.5", "10.0.0.9", None, "infinite"),
        (
            "10.0.0.5, 10.0.0.9, 255.255.255.0, 3600",
            "10.0.0.5",
            "10.0.0.9",
            "255.255.255.0",
            "3600",
        ),
        ("10.0.0.5,10.0.0.5,30m", "10.0.0.5", "10.0.0.5", None, "30m"),
    ],
)
def test_dhcp_ranges_in_dnsmasqs_form_parse(text, start, end, netmask, lease):
    rng = parse_dhcp_range(text)

    assert str(rng.start) == start
    assert str(rng.end) == end
    assert (str(rng.netmask) if rng.netmask else None) == netmask
    assert rng.lease == lease


def with_boot(**keys: str) -> str:
    lines = "".join(f"  {k}: {v}\n" for k, v in keys.items())
    return "boottorrent:\n  version: 0\n" + lines


BAD = [
    # (id, file text, key path in the message, fix hint in the message)
    ("int-is-a-word", with_boot(timeout="soon"), "boottorrent.timeout", 'write e.g. "timeout: 30"'),
    (
        "int-is-a-bool",
        with_boot(seed_time="true"),
        "boottorrent.seed_time",
        'write e.g. "seed_time: 30"',
    ),
    ("int-is-a-float", MINIMAL + "http: {port: 80.5}", "http.port", 'write e.g. "port: 8080"'),
    (
        "bool-is-a-word",
        MINIMAL + "dnsmasq: {enable_dhcp: sure}",
        "dnsmasq.enable_dhcp",
        'write e.g. "enable_dhcp: true"',
    ),
    (
        "bool-is-a-number",
        MINIMAL + "dnsmasq: {enable_tftp: 1}",
        "dnsmasq.enable_tftp",
        "true or false",
    ),
    ("str-is-a-number", MINIMAL + "dnsmasq: {user: 1000}", "dnsmasq.user", "quote it"),
    (
        "str-is-a-list",
        MINIMAL + "dnsmasq: {interface: [eth0]}",
        "dnsmasq.interface",
        'write e.g. "interface: eth0"',
    ),
    (
        "list-is-a-string",
        with_boot(display_oss="testos"),
        "boottorrent.display_oss",
        "[debian12, freedos]",
    ),
    ("list-twice", with_boot(display_oss="[a, a]"), "boottorrent.display_oss", "once"),
    (
        "os-name-with-slash",
        with_boot(default_os="a/b"),
        "boottorrent.default_os",
        "folder in the OS library",
    ),
    (
        "default-not-displayed",
        with_boot(display_oss="[a]", default_os="b"),
        "boottorrent.default_os",
        "add it there",
    ),
    (
        "port-out-of-range",
        MINIMAL + "opentracker: {port: 70000}",
        "opentracker.port",
        "from 1 to 65535",
    ),
    ("port-zero", MINIMAL + "seeder: {peer_port: 0}", "seeder.peer_port", "from 1 to 65535"),
    (
        "prefix-too-long",
        MINIMAL + "network: {prefix_length: 31}",
        "network.prefix_length",
        "from 8 to 30",
    ),
    (
        "announce-too-often",
        MINIMAL + "tracker: {announce_interval: 1}",
        "tracker.announce_interval",
        "at least 5",
    ),
    (
        "negative-upload-limit",
        MINIMAL + "seeder: {upload_limit_kbps: -1}",
        "seeder.upload_limit_kbps",
        "at least 0",
    ),
    (
        "report-interval-zero",
        MINIMAL + "client: {report_interval: 0}",
        "client.report_interval",
        "at least 1",
    ),
    (
        "unknown-choice",
        MINIMAL + "aria2: {console_log_level: warning}",
        "aria2.console_log_level",
        "did you mean 'warn'",
    ),
    ("unknown-dhcp-mode", MINIMAL + "dhcp: {mode: relay}", "dhcp.mode", "one of full, proxy"),
    (
        "unknown-key",
        MINIMAL + "dnsmasq: {enable_dchp: true}",
        "dnsmasq.enable_dchp",
        "did you mean 'enable_dhcp'",
    ),
    (
        "unknown-key-lists-known",
        MINIMAL + "opentracker: {adress: x}",
        "opentracker.adress",
        "section opentracker knows: enable, port",
    ),
    ("unknown-section", MINIMAL + "dnsmsq: {}", "dnsmsq", "did you mean 'dnsmasq'"),
    ("section-not-mapping", MINIMAL + "dnsmasq: [eth0]", "dnsmasq", "indent its keys"),
    ("missing-boottorrent", "dnsmasq: {}\n", "boottorrent", "version: 0"),
    (
        "missing-version",
        "boottorrent: {timeout: 5}\n",
        "boottorrent.version",
        'write e.g. "version: 0"',
    ),
    (
        "version-1",
        "boottorrent: {version: 1}\n",
        "boottorrent.version",
        "this daemon reads version 0",
    ),
    (
        "version-string",
        "boottorrent: {version: '0'}\n",
        "boottorrent.version",
        'write e.g. "version: 0"',
    ),
    (
        "ip-not-an-address",
        with_boot(host_ip="server.lan"),
        "boottorrent.host_ip",
        "host_ip: 192.168.1.1",
    ),
    ("ip-unspecified", with_boot(host_ip="0.0.0.0"), "boottorrent.host_ip", "unicast address"),
    (
        "ip-broadcast",
        with_boot(host_ip="255.255.255.255"),
        "boottorrent.host_ip",
        "unicast address",
    ),
    ("ip-multicast", with_boot(host_ip="224.0.0.1"), "boottorrent.host_ip", "unicast address"),
    ("ip-loopback", with_boot(host_ip="127.0.0.1"), "boottorrent.host_ip", "unicast address"),
    (
        "ip-is-the-subnets-network-address",
        with_boot(host_ip="192.168.1.0"),
        "boottorrent.host_ip",
        "e.g. 192.168.1.1",
    ),
    (
        "interface-too-long",
        MINIMAL + "dnsmasq: {interface: averyveryverylongname}",
        "dnsmasq.interface",
        "ip link",
    ),
    (
        "interface-with-colon",
        MINIMAL + "dnsmasq: {interface: 'eth0:1'}",
        "dnsmasq.interface",
        "ip link",
    ),
    (
        "range-reversed",
        MINIMAL + 'dnsmasq: {dhcp_range: "192.168.1.150,192.168.1.50"}',
        "dnsmasq.dhcp_range",
        'dhcp_range: "192.168.1.50,192.168.1.150,12h"',
    ),
    (
        "range-bad-address",
        MINIMAL + 'dnsmasq: {dhcp_range: "192.168.1.50,192.168.1.300"}',
        "dnsmasq.dhcp_range",
        "not an IPv4 address",
    ),
    (
        "range-bad-lease",
        MINIMAL + 'dnsmasq: {dhcp_range: "192.168.1.50,192.168.1.99,12y"}',
        "dnsmasq.dhcp_range",
        "lease time",
    ),
    (
        "range-without-end",
        MINIMAL + 'dnsmasq: {dhcp_range: "192.168.1.50"}',
        "dnsmasq.dhcp_range",
        "dhcp.mode: proxy",
    ),
    (
        "range-outside-subnet",
        MINIMAL + 'dnsmasq: {dhcp_range: "10.0.0.50,10.0.0.99"}',
        "dnsmasq.dhcp_range",
        "move the range into that subnet",
    ),
    (
        "dht-on-transmission",
        MINIMAL + "transmission: {dht_enabled: True}",
        "transmission.dht_enabled",
        "write false",
    ),
    ("dht-on-aria2", MINIMAL + "aria2: {enable_dht: true}", "aria2.enable_dht", "write false"),
    ("dht6-on-aria2", MINIMAL + "aria2: {enable_dht6: true}", "aria2.enable_dht6", "write false"),
    (
        "no-peer-discovery",
        MINIMAL + "opentracker: {enable: false}",
        "opentracker.enable",
        "aria2.bt_enable_lpd: true",
    ),
    ("no-tracker-no-lpd", MINIMAL + "tracker: {kind: none}", "tracker.kind", "aria2.bt_enable_lpd"),
    (
        "hefur-against-kind",
        MINIMAL + "hefur: {enable: true}\ntracker: {kind: opentracker}",
        "hefur.enable",
        "tracker.kind: hefur",
    ),
    ("ports-collide", MINIMAL + "http: {port: 10001}", "http.port", "its own port"),
    (
        "cmdline-two-lines",
        MINIMAL + 'client: {extra_cmdline: "a\\nb"}',
        "client.extra_cmdline",
        "one line",
    ),
    (
        "not-a-mapping",
        "- boottorrent\n",
        "boottorrent.yaml: expected a mapping",
        "--print-default-config",
    ),
    ("empty-file", "", "the file is empty", "version: 0"),
    ("yaml-syntax", "boottorrent:\n  version: 0\n  timeout: [30\n", "line 4", "fix the syntax"),
    ("yaml-tab", "boottorrent:\n\tversion: 0\n", "line 2", "not tabs"),
    (
        "duplicate-section",
        MINIMAL + "dnsmasq: {}\ndnsmasq: {}\n",
        "line 4",
        "keep only one of them",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "fix"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_every_mistake_names_its_key_and_the_fix(text, key, fix):
    with pytest.raises(ConfigError) as caught:
        parse_text(text)

    message = str(caught.value)
    assert message.startswith("boottorrent.yaml: ")
    assert key in message
    assert fix in message


def test_config_errors_are_invalid_arguments_with_the_key_path():
    with pytest.raises(InvalidArgument) as caught:
        parse_text(MINIMAL + "dnsmasq: {dhcp_range: nonsense}")

    assert caught.value.key == "dnsmasq.dhcp_range"
    assert caught.value.source == "boottorrent.yaml"


def test_a_missing_file_says_how_to_create_it(tmp_path):
    path = tmp_path / "boottorrent.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert str(path) in message
    assert "/usr/share/doc/boottorrent/boottorrent.yaml" in message
    assert "boottorrentd --print-default-config" in message


def test_a_file_with_bad_yaml_reports_the_line_and_its_path(tmp_path):
    path = tmp_path / "boottorrent.yaml"
    path.write_text('boottorrent:\n  version: 0\n  host_ip: "192.168.1.1\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: line ")


def test_a_file_that_is_a_list_is_refused(tmp_path):
    path = tmp_path / "boottorrent.yaml"
    path.write_text("- 1\n- 2\n")

    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(path)
