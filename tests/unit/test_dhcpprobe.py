"""The DHCP probe's packets and decisions, without a network: what the DISCOVER carries,
which replies count as offers, what the session makes of them, and how the watch keeps
from flapping. tests/integration/test_dhcp_probe.py runs it against real servers."""

import struct
from ipaddress import IPv4Address

import pytest

from boottorrentd.session.dhcpprobe import (
    BROADCAST_FLAG,
    MAGIC_COOKIE,
    DhcpConflict,
    DhcpDecision,
    Offer,
    Watch,
    build_discover,
    decide,
    parse_offer,
    parse_options,
    probe_mac,
    servers,
)

MAC = bytes.fromhex("02aabbccddee")
XID = 0x12345678
SITE = IPv4Address("10.1.2.2")
OURS = IPv4Address("10.1.2.1")


def reply(*, op: int = 2, xid: int = XID, mac: bytes = MAC, msg_type: int = 2,
          server_id: bytes | None = SITE.packed, yiaddr: str = "10.1.2.200",
          extra: bytes = b"") -> bytes:
    """A server's reply to the probe, as it comes off the wire."""
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, BROADCAST_FLAG,
                         bytes(4), IPv4Address(yiaddr).packed, bytes(4), bytes(4),
                         mac.ljust(16, b"\0"), b"", b"")
    options = bytes([53, 1, msg_type])
    if server_id is not None:
        options += bytes([54, len(server_id)]) + server_id
    return header + MAGIC_COOKIE + options + extra + b"\xff"


def test_the_probe_mac_is_locally_administered_unicast_and_stable_per_host_and_interface():
    mac = probe_mac(b"machine-a", "eth0")
    assert len(mac) == 6
    assert mac[0] & 0x02 and not mac[0] & 0x01
    assert probe_mac(b"machine-a", "eth0") == mac
    assert probe_mac(b"machine-b", "eth0") != mac
    assert probe_mac(b"machine-a", "eth1") != mac


def test_the_discover_asks_for_a_broadcast_reply_and_names_only_the_probe():
    packet = build_discover(MAC, XID)
    op, htype, hlen, _, xid, _, flags, ciaddr = struct.unpack_from("!BBBBIHH4s", packet)
    assert (op, htype, hlen, xid) == (1, 1, 6, XID)
    assert flags & BROADCAST_FLAG
    assert ciaddr == bytes(4)
    assert packet[28:34] == MAC
    assert packet[236:240] == MAGIC_COOKIE
    options = parse_options(packet[240:])
    assert options is not None
    assert options[53] == b"\x01"  # DHCPDISCOVER, never a REQUEST
    assert options[61] == b"\x01" + MAC
    assert 54 in options[55]
    assert len(packet) >= 300


def test_an_offer_to_the_probe_names_its_server_by_its_server_identifier():
    offer = parse_offer(reply(), "10.1.2.99", xid=XID, mac=MAC)
    assert offer == Offer(server=SITE, offered=IPv4Address("10.1.2.200"))


def test_an_offer_without_a_server_identifier_is_named_by_its_sender():
    offer = parse_offer(reply(server_id=None), "10.1.2.7", xid=XID, mac=MAC)
    assert offer is not None and offer.server == IPv4Address("10.1.2.7")


@pytest.mark.parametrize("packet", [
    reply(xid=XID + 1),                   # another client's transaction
    reply(mac=bytes.fromhex("525400000001")),
    reply(op=1),                          # a request, not a reply
    reply(msg_type=5),                    # an ACK to someone else's REQUEST
    reply()[:200],                        # cut short
    reply()[:240] + bytes([54, 4, 10]),   # an option running past the end
    reply().replace(MAGIC_COOKIE, bytes(4)),
], ids=["other-xid", "other-mac", "request", "ack", "short", "truncated-option", "bootp"])
def test_anything_but_an_offer_to_the_probe_is_ignored(packet: bytes):
    assert parse_offer(packet, "10.1.2.2", xid=XID, mac=MAC) is None


def test_pad_options_and_repeated_options_are_read_as_rfc_3396_says():
    assert parse_options(bytes([0, 0, 12, 2]) + b"ab" + bytes([12, 1]) + b"c" + b"\xff") == {
        12: b"abc"}


def test_our_own_offers_are_not_another_server():
    offers = [Offer(SITE, IPv4Address("10.1.2.200")), Offer(OURS, IPv4Address("10.1.2.100")),
              Offer(SITE, IPv4Address("10.1.2.201"))]
    assert servers(offers, own=OURS) == [SITE]


def test_auto_serves_full_dhcp_on_an_empty_lan_and_proxy_beside_another_server():
    assert decide("auto", [], "eth0") == DhcpDecision("full")
    beside = decide("auto", [SITE], "eth0")
    assert beside.mode == "proxy"
    assert "10.1.2.2" in beside.reason and "eth0" in beside.reason


def test_full_beside_another_server_is_refused_naming_it_and_the_fix():
    assert decide("full", [], "eth0") == DhcpDecision("full")
    with pytest.raises(DhcpConflict) as refused:
        decide("full", [SITE, IPv4Address("10.1.2.3")], "eth0")
    message = str(refused.value)
    assert "10.1.2.2, 10.1.2.3" in message and "eth0" in message
    assert "dhcp.mode: proxy" in message and "auto" in message


def test_a_server_seen_once_is_present_at_once():
    watch = Watch()
    assert watch.update([SITE]) is True
    assert watch.present == [SITE]
    assert "10.1.2.2" in watch.reason


def test_a_server_counts_as_gone_only_after_two_probes_in_a_row_without_it():
    watch = Watch()
    watch.update([SITE])
    assert watch.update([]) is False  # one lost offer: still there
    assert watch.update([SITE]) is False
    assert watch.update([]) is False
    assert watch.update([]) is True
    assert watch.present == [] and watch.reason == ""


def test_an_empty_lan_stays_clear():
    watch = Watch()
    assert [watch.update([]) for _ in range(3)] == [False, False, False]
    assert watch.reason == ""
