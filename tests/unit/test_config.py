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
    assert cfg.children.user is None
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
    assert cfg.swarm.peer_exchange is True
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
    assert cfg.children.user == "shreyansh"
    assert cfg.hefur.enable is True
    assert cfg.aria2.bt_enable_lpd is True
    assert cfg.aria2.check_integrity is True
    assert cfg.tracker_kind == "hefur"
    assert cfg.tracker_port == 10001


def test_a_minimal_file_takes_every_default():
    assert parse_text(MINIMAL) == Config(boottorrent=BootSection())


def test_a_section_with_all_keys_commented_out_takes_its_defaults():
    assert parse_text(MINIMAL + "dnsmasq:\n  # user: nobody\n").children.user is None


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
    assert cfg.children.user is None


def test_proxy_dhcp_accepts_a_subnet_alone():
    cfg = parse_text(MINIMAL + 'dhcp: {mode: proxy}\ndnsmasq: {dhcp_range: "192.168.1.0"}')

    assert cfg.dhcp_range.start == ipaddress.IPv4Address("192.168.1.0")
    assert cfg.dhcp_range.end is None


def test_dhcp_mode_auto_is_the_default_and_needs_a_full_range():
    cfg = parse_text(MINIMAL)
    assert (cfg.dhcp.mode, cfg.dhcp.probe_seconds) == ("auto", 4)

    with pytest.raises(ConfigError, match=r"dnsmasq.dhcp_range: .*dhcp.mode auto may serve full"):
        parse_text(MINIMAL + 'dnsmasq: {dhcp_range: "192.168.1.0"}')


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
    ("unknown-dhcp-mode", MINIMAL + "dhcp: {mode: relay}", "dhcp.mode",
     "one of auto, full, proxy"),
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
        "other-tracker-not-a-url",
        MINIMAL + "swarm:\n  other_trackers: [10.0.0.2:6969]\n",
        "swarm.other_trackers",
        "http://HOST:PORT/announce",
    ),
    ("unknown-role", MINIMAL + "swarm:\n  role: mirror\n", "swarm.role", "seed"),
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


# --- the seed's names, read as what they do ----------------------------------------------


def test_the_seeds_dnsmasq_user_is_who_every_child_runs_as():
    cfg = parse_text(MINIMAL + "dnsmasq: {user: nobody, interface: eth1}")

    assert cfg.children.user == "nobody"
    assert cfg.dnsmasq.interface == "eth1"
    assert "user" not in config_to_dict(cfg)["dnsmasq"]


def test_the_seeds_aria2_peer_exchange_is_the_swarms_peer_exchange():
    cfg = parse_text(MINIMAL + "aria2: {enable_peer_exchange: false}")

    assert cfg.swarm.peer_exchange is False


def test_the_new_names_work_without_the_old_ones():
    cfg = parse_text(MINIMAL + "children: {user: nobody}\nswarm: {peer_exchange: false}")

    assert (cfg.children.user, cfg.swarm.peer_exchange) == ("nobody", False)
    assert parse_config(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg


def test_a_mistake_in_an_old_name_is_reported_under_that_name():
    with pytest.raises(ConfigError) as caught:
        parse_text(MINIMAL + "aria2: {enable_peer_exchange: maybe}")

    message = str(caught.value)
    assert "aria2.enable_peer_exchange: expected true or false" in message
    assert 'write e.g. "enable_peer_exchange: true"' in message


def test_an_old_name_beside_its_new_name_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_text(MINIMAL + "dnsmasq: {user: nobody}\nchildren: {user: boottorrent}")

    assert "dnsmasq.user" in str(caught.value)
    assert "keep only children.user" in str(caught.value)


def test_the_default_text_shows_the_new_names_only():
    text = default_config_text()

    assert "\nchildren:\n" in text
    assert "\nswarm:\n" in text
    assert "\n  enable_peer_exchange:" not in text
    assert "dnsmasq.user as children.user" in text


# --- OS names: the library's rule --------------------------------------------------------


@pytest.mark.parametrize("name", ["Debian12", "a b", "-x", ".hidden", "x" * 65])
def test_an_os_name_the_library_would_refuse_is_refused_with_the_key_and_the_fix(name):
    with pytest.raises(ConfigError) as caught:
        parse_text(with_boot(default_os=f'"{name}"'))

    message = str(caught.value)
    assert "boottorrent.default_os" in message
    assert "a-z, 0-9" in message


def test_a_capitalised_os_name_suggests_the_library_spelling():
    with pytest.raises(ConfigError, match=r"e\.g\. 'debian12'"):
        parse_text(with_boot(display_oss="[Debian12]"))


def test_os_names_the_library_accepts_are_accepted():
    cfg = parse_text(with_boot(display_oss='[debian12, "2024", win.11_x-64]'))

    assert cfg.boottorrent.display_oss == ("debian12", "2024", "win.11_x-64")


# --- library.piece_length and transmission.settings ---------------------------------------


def test_the_piece_length_is_auto_unless_a_power_of_two_is_given():
    assert parse_text(MINIMAL).library.fixed_piece_length is None
    cfg = parse_text(MINIMAL + "library: {piece_length: 65536}")

    assert cfg.library.piece_length == 65536
    assert cfg.library.fixed_piece_length == 65536


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("100000", "e.g. 65536 or 131072"),
        ("8192", "at least 16384"),
        ("automatic", "did you mean 'auto'"),
        ("true", "auto or a whole number of bytes"),
    ],
)
def test_a_wrong_piece_length_names_its_key_and_the_fix(value, fix):
    with pytest.raises(ConfigError) as caught:
        parse_text(MINIMAL + f"library: {{piece_length: {value}}}")

    assert "library.piece_length" in str(caught.value)
    assert fix in str(caught.value)


def test_transmission_settings_are_a_mapping_of_settings_json_keys():
    cfg = parse_text(MINIMAL + "transmission: {settings: {cache-size-mb: 64, encryption: 2}}")

    assert cfg.transmission.settings == {"cache-size-mb": 64, "encryption": 2}
    assert parse_text(MINIMAL).transmission.settings is None


@pytest.mark.parametrize(
    ("setting", "fix"),
    [
        ("rpc-port: 1", "private RPC channel"),
        ("rpc-whitelist-enabled: false", "private RPC channel"),
        ("peer-port: 6881", "set seeder.peer_port instead"),
        ("download-dir: /srv", "serves the OS library"),
        ("pex-enabled: false", "set swarm.peer_exchange instead"),
        ("dht-enabled: true", "beyond the lab"),
        ("encryption: [1]", "expected a number, a string or true/false"),
        ("1: 2", "expected names as keys"),
    ],
)
def test_transmission_settings_the_seeder_owns_are_refused(setting, fix):
    with pytest.raises(ConfigError) as caught:
        parse_text(MINIMAL + f"transmission:\n  settings:\n    {setting}\n")

    assert "transmission.settings" in str(caught.value)
    assert fix in str(caught.value)


def test_transmission_settings_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"transmission\.settings: expected a mapping"):
        parse_text(MINIMAL + "transmission: {settings: [encryption]}")
