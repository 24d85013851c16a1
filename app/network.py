"""Who the client is, by network address: what anonymous idempotency keys and the anonymous rate limit key on.

`X-Forwarded-For` is anyone's to write, so it is believed only as far as it was written by proxies the operator
trusts (`AGORA_TRUSTED_PROXIES`, empty by default): the peer must be one, and the chain is read from the right,
skipping trusted hops, to the first address a trusted proxy saw. Uvicorn's own proxy-header handling would trust
any local peer, so `agora serve` turns it off and this is the only place the header is read.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: An IPv6 host usually owns a whole /64 and can pick any address in it: the rate limit counts the /64.
IPV6_LIMIT_PREFIX = 64


@functools.lru_cache(maxsize=8)
def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """Networks (or bare addresses) separated by commas or whitespace; ValueError names a bad item."""
    networks = []
    for item in (item for item in re.split(r"[,\s]+", text) if item):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as error:
            raise ValueError(f"not an IP address or network: {item!r} ({error})") from None
    return tuple(networks)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress | None, trusted: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_proxies: str) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy that says whom it forwards for."""
    trusted = parse_trusted_proxies(trusted_proxies)
    peer_address = _address(peer or "")
    if not _trusted(peer_address, trusted):
        return str(peer_address) if peer_address else "unknown"
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage a trusted proxy passed on from further left: keep the last good hop
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def limit_key(address: str) -> str:
    """What the anonymous rate limit counts: the address, or an IPv6 address's /64."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_LIMIT_PREFIX}", strict=False))
    return address
