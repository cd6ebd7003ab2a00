"""Which address failed sign-ins count against, behind trusted proxies or not."""

from __future__ import annotations

import pytest

from tokensvc import config
from tokensvc.forwarded import client_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


@pytest.mark.parametrize(
    ("peer", "header", "proxies", "expected"),
    [
        ("203.0.113.9", [], PROXIES, "203.0.113.9"),
        # An untrusted peer cannot choose its address by sending the header.
        ("203.0.113.9", ["198.51.100.1"], PROXIES, "203.0.113.9"),
        # Behind the ingress: the right-most entry that is not a proxy.
        ("10.1.2.3", ["198.51.100.7"], PROXIES, "198.51.100.7"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.7, 10.9.9.9"], PROXIES, "198.51.100.7"),
        ("10.1.2.3", ["garbage, 10.9.9.9"], PROXIES, "garbage"),
        ("10.1.2.3", ["10.9.9.9"], PROXIES, "10.1.2.3"),
        # Several lines are one list in order (RFC 7230 §3.2.2): the client's own line, sent
        # before the proxy's, cannot choose the address.
        ("10.1.2.3", ["6.6.6.6", "198.51.100.7"], PROXIES, "198.51.100.7"),
        ("10.1.2.3", ["6.6.6.6, 7.7.7.7", "198.51.100.7, 10.9.9.9"], PROXIES, "198.51.100.7"),
        ("10.1.2.3", ["198.51.100.7", ""], PROXIES, "198.51.100.7"),
        # Without trusted proxies the header is ignored.
        ("10.1.2.3", ["198.51.100.7"], (), "10.1.2.3"),
        (None, [], (), "-"),
    ],
)
def test_client_address(peer, header, proxies, expected) -> None:
    assert client_address(peer, header, proxies) == expected


def test_setting_is_validated() -> None:
    env = {"TOKENSVC_TRUSTED_PROXIES": "10.0.0.0/8,::1"}
    assert config.load(env, dev=True).trusted_proxies == ("10.0.0.0/8", "::1/128")
    with pytest.raises(config.ConfigError, match="TOKENSVC_TRUSTED_PROXIES"):
        config.load({"TOKENSVC_TRUSTED_PROXIES": "not-an-ip"}, dev=True)
