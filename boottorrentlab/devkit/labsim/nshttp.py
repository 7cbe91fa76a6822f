"""HTTP from inside a network namespace, through sockets this process makes there.

A machine's reports and boot-file requests go this way instead of through a shell in its
namespace: a POST every second from 200 shells would cost a core on its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(netns: str) -> socket.socket:
    """A TCP socket that lives in namespace `netns` (setns for this thread, and back)."""
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{netns}") as target:
        if _libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if _libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    sock.setblocking(False)
    return sock


async def http(netns: str, host: str, port: int, method: str, path: str,
               body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP/1.1 request from namespace `netns`, as busybox wget sends it; (status, body)."""
    sock = socket_in(netns)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            if method == "POST":
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            answer = await reader.read()
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()
    header, _, content = answer.partition(b"\r\n\r\n")
    return int(header.split(b" ", 2)[1]), content
