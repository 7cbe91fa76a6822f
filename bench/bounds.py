"""The physical limits a run is measured against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Links:
    """Rates in bits per second."""

    server_up: int
    server_down: int
    client_up: int
    client_down: int


def kumar_ross_bound(size_bytes: int, clients: int, links: Links) -> float:
    """T* = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)) in seconds (every client alike)."""
    bits = size_bytes * 8
    return max(bits / links.server_up, bits / links.client_down,
               clients * bits / (links.server_up + clients * links.client_up))


def unicast_bound(size_bytes: int, clients: int, links: Links) -> float:
    """The least time for the server alone to send every client its copy."""
    bits = size_bytes * 8
    return max(clients * bits / links.server_up, bits / links.client_down)
