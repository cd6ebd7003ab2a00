"""The client address failed sign-ins are counted against.

Behind an ingress every request comes from the proxy, so one person's failures would lock
everyone out. When the direct peer is a trusted proxy (`TOKENSVC_TRUSTED_PROXIES`, CIDRs), the
address is the right-most `X-Forwarded-For` entry that is not itself a trusted proxy: entries
to its left were written by the client and cannot be believed. The header may arrive as several
lines (a client's own line first, the proxy's appended after it); they are one list, in order
(RFC 7230 §3.2.2), so a line the client sent never stands to the right of the proxy's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks; raises ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    """Is the TCP peer `address` one of the `proxies`? An IPv4-mapped IPv6 peer
    (`::ffff:10.0.0.1`, from a dual-stack socket) counts as its IPv4 address too."""
    if _trusted(address, proxies):
        return True
    if address.startswith("::ffff:"):
        return _trusted(address[7:], proxies)
    return False


def client_address(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]
) -> str:
    """`forwarded_for`: every `X-Forwarded-For` line of the request, in the order received."""
    peer = peer or "-"
    if not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    for hop in reversed([h.strip() for h in ",".join(forwarded_for).split(",")]):
        if hop and not _trusted(hop, proxies):
            return hop
    return peer
