"""The client's address: X-Forwarded-For believed only from trusted proxies, read from the right."""

from __future__ import annotations

import re

import pytest

from app.network import client_address, limit_key, parse_trusted_proxies

TRUSTED = "10.0.0.0/8, 192.168.1.1"


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", [], "203.0.113.5"),
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # an untrusted peer's header is ignored
        ("127.0.0.1", ["198.51.100.1"], "127.0.0.1"),  # local peers are not trusted unless configured
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # what the client wrote is skipped
        ("10.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # several header lines are one list
        ("10.0.0.1", [], "10.0.0.1"),  # a trusted proxy that forwards for nobody is the client
        ("10.0.0.1", ["10.0.0.2, 10.0.0.3"], "10.0.0.2"),  # all trusted: the leftmost known hop
        ("10.0.0.1", ["garbage, 10.0.0.3"], "10.0.0.3"),  # garbage stops the walk at the last good hop
        ("192.168.1.1", ["[2001:db8::1]"], "2001:db8::1"),
        ("::ffff:10.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peers are their IPv4 address
        (None, [], "unknown"),
        ("testclient", [], "unknown"),
    ],
)
def test_client_address(peer, forwarded, expected):
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_nothing_is_trusted_by_default():
    assert client_address("127.0.0.1", ["198.51.100.1"], "") == "127.0.0.1"


def test_ipv6_clients_are_limited_by_their_64():
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("203.0.113.5") == "203.0.113.5"


def test_a_bad_trusted_proxy_is_named():
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/33'")):
        parse_trusted_proxies("10.0.0.0/8, 10.0.0.1/33")
