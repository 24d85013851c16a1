"""Outgoing webhooks: which URLs may receive them (SSRF rules), how deliveries are signed (TaskHive's header and
Standard Webhooks), and when a failed delivery is retried. Pure: resolving names and sending requests belong to the
services, which ask these rules about every address a name resolves to, right before connecting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from secrets import token_hex
from string import punctuation
from urllib.parse import quote, urlsplit

from domain.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# --- URLs ---------------------------------------------------------------------------------------------------------

MAX_URL_LENGTH = 2048
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
_MAX_HOST_LENGTH = 253
# A DNS name once IDNA-encoded; "_" is not valid in host names but appears in real ones, and is harmless.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# Everything inet_aton could read as an IPv4 address: decimal, octal and hex parts joined by dots.
_INET_ATON_SHAPE = re.compile(r"[0-9a-fA-FxX.]+")
# Printable ASCII stays as written in the request target; only non-ASCII text gets percent-encoded.
_TARGET_SAFE = punctuation


class WebhookUrlForbidden(Unprocessable):
    code = "WEBHOOK_URL_FORBIDDEN"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Webhook URL refused: {reason}",
            "Use a public http(s) URL such as https://hooks.example.com/agora, without user name or password, "
            "whose host is a public address or a name that resolves to one.",
        )
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A webhook URL taken apart into what a client needs to connect to a checked address and ask for the page."""

    scheme: str
    host: str  # lower case; an IP literal in canonical form (IPv6 without brackets); a name IDNA-encoded
    port: int
    target: str  # the request target: path plus "?query", never empty

    def authority(self) -> str:
        """The Host header's value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_webhook_url(url: str) -> WebhookUrl:
    """Take `url` apart, refusing anything but plain http(s) to a host: no credentials, no other scheme, no odd text.

    IP literals come back canonical ("http://2130706433/" has host "127.0.0.1", as browsers would have it), so the
    host checked is the host connected to. Whether the address may be reached is `address_allowed`'s question.
    """
    _refuse_odd_text(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # malformed brackets ("http://[::1/", "http://[127.0.0.1]/")
        raise WebhookUrlForbidden(f"the URL is malformed ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise WebhookUrlForbidden("the scheme must be http or https")
    host_text, port_text = _split_authority(parts.netloc)
    host = _canonical_host(host_text)
    port = _port(port_text, default=DEFAULT_PORTS[parts.scheme])
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebhookUrl(parts.scheme, host, port, quote(target, safe=_TARGET_SAFE))  # the fragment never leaves here


def _refuse_odd_text(url: object) -> None:
    if not isinstance(url, str):
        raise WebhookUrlForbidden("the URL must be a string")
    if not url:
        raise WebhookUrlForbidden("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlForbidden(f"the URL is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines and strips leading spaces: refuse them so what we check is what was sent.
    if any(char.isspace() or not char.isprintable() for char in url):
        raise WebhookUrlForbidden("the URL contains whitespace or control characters")


def _split_authority(netloc: str) -> tuple[str, str]:
    """(host, port text) of an authority; an IPv6 host keeps its brackets."""
    if "@" in netloc:
        raise WebhookUrlForbidden("the URL must not carry a user name or password")
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise WebhookUrlForbidden("the IPv6 address is not properly bracketed")
        return f"[{host}]", rest[1:]
    if netloc.count(":") > 1:
        raise WebhookUrlForbidden("an IPv6 address must be written in brackets")
    host, _, port = netloc.partition(":")
    return host, port


def _canonical_host(host: str) -> str:
    if host in ("", "[]"):
        raise WebhookUrlForbidden("the URL has no host")
    if "%" in host:  # an IPv6 zone, or percent-encoding some clients would decode into another host
        raise WebhookUrlForbidden("the host must not contain '%'")
    if host.startswith("["):
        address = literal_address(host)
        if not isinstance(address, ipaddress.IPv6Address):
            raise WebhookUrlForbidden("the bracketed host is not an IPv6 address")
        return str(address)
    ascii_host = _idna(host.lower())
    address = literal_address(ascii_host)  # only after IDNA, which maps full-width digits and dots to ASCII
    if address is not None:
        return str(address)
    if len(ascii_host.rstrip(".")) > _MAX_HOST_LENGTH or not _HOST_NAME.fullmatch(ascii_host):
        raise WebhookUrlForbidden("the host is not a valid domain name")
    return ascii_host


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise WebhookUrlForbidden("the host is not a valid domain name") from None


def _port(text: str, *, default: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise WebhookUrlForbidden("the port must be a number from 1 to 65535")
    return int(text)


# --- addresses ----------------------------------------------------------------------------------------------------

# IPv6 prefixes whose addresses stand for an IPv4 host: a packet sent there ends at that host.
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 7915
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215; the operator picks the prefix length
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated by RFC 4291, still routed by some stacks
# Not globally reachable, though `is_global` of Python 3.11 does not know it.
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_IPV6_DOCUMENTATION = ipaddress.IPv6Network("3fff::/20")  # RFC 9637


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names when it is an IP literal in any form a resolver accepts, else None (a DNS name).

    IPv4 goes through inet_aton, as resolvers do, so "127.1", "2130706433", "0x7f000001" and "017700000001" are all
    127.0.0.1. It only parses text: no lookup happens.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    ipv4 = host.removesuffix(".")  # "127.0.0.1." is still an address to browsers and to curl
    # Check the shape first: glibc's inet_aton ignores anything after a space ("127.0.0.1 x.example").
    if not _INET_ATON_SHAPE.fullmatch(ipv4):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(ipv4))
    except OSError:
        return None


def parse_allow_cidrs(text: str) -> tuple[IPNetwork, ...]:
    """The networks an operator lets webhooks reach although they are not public (a local test receiver, say).

    Items are separated by commas or whitespace; a bare address is a /32 or /128. Host bits set ("10.0.0.1/8") are
    refused rather than widened, since the operator meant something and only they know what.
    """
    items = [item for item in re.split(r"[,\s]+", text) if item]
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"not an IP address or network in the webhook allow list: {item!r} ({exc})") from None
    return tuple(networks)


def address_allowed(address: str | IPAddress, allow: tuple[IPNetwork, ...]) -> bool:
    """True when webhooks may be sent to `address`: it is in `allow`, or it is public.

    An IPv6 address that stands for IPv4 hosts (mapped, translated, compatible, 6to4, Teredo, NAT64) is judged by
    those hosts, each of which must be in `allow` or public: that is where the packets end.
    """
    ip = _as_address(address)
    if _in_any(ip, allow):
        return True
    embedded = embedded_ipv4(ip)
    if embedded:
        return all(_in_any(ipv4, allow) or is_public(ipv4) for ipv4 in embedded)
    return is_public(ip)


def _as_address(address: str | IPAddress) -> IPAddress:
    if not isinstance(address, str):
        return address
    ip = literal_address(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    return ip


def _in_any(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip in network for network in networks)  # an IPv4 address is never in an IPv6 network, and back


def is_public(ip: IPAddress) -> bool:
    """Globally reachable unicast: `is_global`, plus the ranges `is_global` lets through in Python 3.11."""
    special = (
        ip.is_multicast or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )
    if isinstance(ip, ipaddress.IPv4Address):
        special = special or ip in _SHARED_ADDRESS_SPACE
    else:
        special = special or ip.is_site_local or ip in _IPV6_DOCUMENTATION
    return ip.is_global and not special


def embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 hosts an IPv6 address stands for; () for IPv4 and for IPv6 addresses embedding none."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ()
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client): the packets pass through one and end at the other
    if ip in _IPV4_TRANSLATED or ip in _NAT64_WELL_KNOWN or ip in _IPV4_COMPATIBLE:
        return (_ipv4(ip.packed[12:]),)
    if ip in _NAT64_LOCAL_USE:
        # The IPv4 bits sit where the operator's prefix length puts them (RFC 6052 section 2.2), which an address
        # does not tell, so each place must hold an acceptable address: in practice, allow-list the prefix.
        packed = ip.packed
        return tuple(
            _ipv4(octets)
            for octets in (
                packed[6:8] + packed[9:11],  # /48
                packed[7:8] + packed[9:12],  # /56
                packed[9:13],  # /64
                packed[12:16],  # /96
            )
        )
    return ()


def _ipv4(octets: bytes) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(octets)


# --- signatures ---------------------------------------------------------------------------------------------------

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the prefix every secret shares, not a secret
SECRET_BYTES = 24  # 48 hex characters, TaskHive's format; also valid base64 of 36 bytes, Standard Webhooks' key
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    return SECRET_PREFIX + token_hex(SECRET_BYTES)


def taskhive_signature(secret: str, body: bytes) -> str:
    """TaskHive's X-TaskHive-Signature: HMAC-SHA256 keyed by the secret as written, "whsec_" included."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key Standard Webhooks derives from a secret: the base64 after "whsec_" (padding optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret must be base64 after its whsec_ prefix") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def standard_signature(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one "v1,<base64>" per secret, current first, so receivers holding either
    secret accept the delivery while a rotation is under way."""
    if not secrets:
        raise ValueError("signing needs at least one secret")
    return " ".join(
        f"{SIGNATURE_VERSION},{base64.b64encode(_standard_digest(secret, message_id, str(timestamp), body)).decode()}"
        for secret in secrets
    )


def _standard_digest(secret: str, message_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()


def verify_standard_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """What a receiver checks: the headers are there, the timestamp is within `tolerance` seconds of `now` (so a
    captured delivery cannot be replayed later), and one "v1" signature is ours."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        return False
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(int(timestamp) - now) > tolerance:
        return False
    expected = _standard_digest(secret, message_id, timestamp, body)
    return any(_signature_matches(candidate, expected) for candidate in signatures.split())


def _signature_matches(candidate: str, expected: bytes) -> bool:
    version, comma, encoded = candidate.partition(",")
    if version != SIGNATURE_VERSION or not comma:
        return False
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(digest, expected)  # constant time: a timing leak would let a forger guess byte by byte


# --- retries ------------------------------------------------------------------------------------------------------

# Standard Webhooks / Svix: the delay before attempts 2 to 8; the first attempt is immediate.
RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_SECONDS) + 1
MAX_RETRY_AFTER_SECONDS = 86400
_default_rng = random.Random()


def retry_delay(
    attempts_made: int, *, scale: float = 1.0, jitter: float = 0.1, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after `attempts_made` failed attempts, or None when the schedule is exhausted.

    Jitter spreads the retries of many deliveries that failed together (a receiver's outage) so they do not all
    return at the same instant; `scale` lets tests compress hours into milliseconds.
    """
    if attempts_made < 1:
        raise ValueError(f"attempts_made must be at least 1, not {attempts_made}")
    if not 0 <= jitter <= 1 or scale < 0:
        raise ValueError("jitter must be within [0, 1] and scale not negative")
    if attempts_made >= MAX_ATTEMPTS:
        return None
    factor = (rng or _default_rng).uniform(1 - jitter, 1 + jitter)
    return RETRY_SCHEDULE_SECONDS[attempts_made - 1] * scale * factor


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header (RFC 9110 section 10.2.3) asks to wait, at most MAX_RETRY_AFTER_SECONDS, so a
    receiver cannot park a delivery forever; None when the header is absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        seconds = MAX_RETRY_AFTER_SECONDS if len(digits) > 6 else int(digits)  # no int() of a million digits
        return float(min(seconds, MAX_RETRY_AFTER_SECONDS))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    delay = (_as_utc(when) - _as_utc(now)).total_seconds()
    return min(max(delay, 0.0), float(MAX_RETRY_AFTER_SECONDS))


def _as_utc(moment: datetime) -> datetime:
    """HTTP dates are GMT; a naive datetime here means UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
