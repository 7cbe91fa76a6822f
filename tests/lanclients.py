"""The client side of a test LAN: DHCP and PXE clients run inside a namespace."""

import json
import sys
from ipaddress import IPv4Address
from pathlib import Path

from boottorrentlab.devkit.lan import Netns

PXE_CLIENT = b"PXEClient".hex()
# The `arch` of pxe() for a machine that is no PXE client: a plain DHCPDISCOVER.
PLAIN_CLIENT = -1

# udhcpc runs this at every state change; it prints what the server sent and configures
# the address, as a real client would (renewals and releases are sent from it).
UDHCPC_SCRIPT = """#!/bin/sh
echo "udhcpc-event $1 ip=$ip boot_file=$boot_file siaddr=$siaddr serverid=$serverid"
case "$1" in
    bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
    deconfig) ip -4 addr flush dev "$interface" ;;
esac
"""

# A PXE ROM's side of the exchange, which udhcpc cannot play (it takes the first offer):
#   probe IFACE ARCH USERCLASS discover              broadcast DHCPDISCOVER, print all offers
#                                                    (ARCH -1: a plain client, no PXE options)
#   probe IFACE ARCH USERCLASS request SERVER ITEM   ask SERVER:4011 for the boot file, from
#                                                    the address the interface has (ITEM: hex
#                                                    of the PXE boot item, "" for none)
# Prints the replies as JSON: from, yiaddr, siaddr, file, options {code: hex}.
PXE_PROBE = r"""
import json, os, socket, struct, sys, time

iface, arch, user_class, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
xid = os.urandom(4)
with open(f"/sys/class/net/{iface}/address") as f:
    mac = bytes.fromhex(f.read().strip().replace(":", ""))

def opt(code, data):
    return bytes([code, len(data)]) + data

opts = opt(53, bytes([1 if mode == "discover" else 3]))
opts += opt(55, bytes([1, 3, 43, 60, 66, 67, 97, 175]))
if arch >= 0:
    opts += opt(60, f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode())
    opts += opt(93, arch.to_bytes(2, "big")) + opt(94, bytes([1, 2, 1]))
    opts += opt(97, bytes(1) + mac * 2 + bytes(4))
if user_class:
    opts += opt(77, user_class.encode())
ciaddr = bytes(4)
if mode == "request":
    server, item = sys.argv[5], sys.argv[6]
    if item:
        opts += opt(43, opt(71, bytes.fromhex(item)) + b"\xff")
    own = os.popen(f"ip -4 -o addr show dev {iface}").read().split()[3].split("/")[0]
    ciaddr = socket.inet_aton(own)
    dest, flags = (server, 4011), 0
else:
    dest, flags = ("255.255.255.255", 67), 0x8000  # unconfigured: replies by broadcast
pkt = struct.pack("!BBBB4sHH4s4s4s4s16s64s128s4s", 1, 1, 6, 0, xid, 0, flags, ciaddr,
                  bytes(4), bytes(4), bytes(4), mac, b"", b"", bytes.fromhex("63825363"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
s.sendto(pkt + opts + b"\xff", dest)
end = time.monotonic() + 1.5
replies = []
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, src = s.recvfrom(4096)
    except socket.timeout:
        break
    if len(data) < 240 or data[0] != 2 or data[4:8] != xid:
        continue
    options, i = {}, 240
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        options[str(data[i])] = data[i + 2:i + 2 + data[i + 1]].hex()
        i += 2 + data[i + 1]
    replies.append({"from": src[0], "yiaddr": socket.inet_ntoa(data[16:20]),
                    "siaddr": socket.inet_ntoa(data[20:24]),
                    "file": data[108:236].split(b"\0")[0].decode(), "options": options})
print(json.dumps(replies))
"""


def write_udhcpc_script(folder: Path) -> Path:
    script = folder / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    return script


def dhcp(ns: Netns, script: Path, *options: str) -> dict[str, str]:
    """Get a lease with busybox udhcpc; return what its script saw when bound."""
    result = ns.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-T", "1", "-t", "5",
                    "-s", str(script), *options, check=False, timeout=30)
    bound = [line for line in result.stdout.splitlines()
             if line.startswith("udhcpc-event bound ")]
    assert result.returncode == 0 and bound, f"no lease:\n{result.stdout}{result.stderr}"
    return dict(pair.split("=", 1) for pair in bound[-1].split()[2:])


def pxe(ns: Netns, arch: int, mode: str, *args: str, user_class: str = "") -> list[dict]:
    result = ns.run(sys.executable, "-c", PXE_PROBE, "eth0", str(arch), user_class, mode, *args)
    return json.loads(result.stdout)


def mac_of(ns: Netns) -> str:
    return ns.run("cat", "/sys/class/net/eth0/address").stdout.strip()


def tlv(hex_data: str) -> dict[int, bytes]:
    """The sub-options of an encapsulated option (e.g. 43, PXE's)."""
    data, out, i = bytes.fromhex(hex_data), {}, 0
    while i + 1 < len(data) and data[i] != 255:
        out[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out


def in_range(ip: str, first: str, last: str) -> bool:
    return IPv4Address(first) <= IPv4Address(ip) <= IPv4Address(last)
