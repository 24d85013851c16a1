"""Pure tests of `domain.webhooks`: signatures (against the official `standardwebhooks` package), the SSRF rules for
URLs and addresses, and the retry schedule. No database, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError, hmac_data

from domain import webhooks
from domain.webhooks import (
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER_SECONDS,
    RETRY_SCHEDULE_SECONDS,
    WebhookUrl,
    WebhookUrlForbidden,
    address_allowed,
    literal_address,
    new_secret,
    parse_allow_cidrs,
    parse_retry_after,
    parse_webhook_url,
    retry_delay,
    standard_signature,
    standard_webhooks_key,
    taskhive_signature,
    verify_standard_signature,
)

SECRET = "whsec_" + "0123456789abcdef" * 3
OTHER_SECRET = "whsec_" + "fedcba9876543210" * 3
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
MESSAGE_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = b'{"type":"task.created","data":{"task_id":42,"title":"caf\xc3\xa9"}}'


def signed_headers(
    secrets: list[str], *, message_id: str = MESSAGE_ID, timestamp: int = NOW, body: bytes = BODY
) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secrets, message_id, timestamp, body),
    }


# --- strategies ---------------------------------------------------------------------------------------------------

# Agora's secrets (48 hex characters) and the package's own kind (base64 of random bytes), which must work alike.
hex_secrets = st.binary(min_size=24, max_size=24).map(lambda raw: "whsec_" + raw.hex())
base64_secrets = st.binary(min_size=16, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
any_secrets = st.one_of(hex_secrets, base64_secrets)
message_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1).map(
    lambda tail: "msg_" + tail
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
unicode_json_bodies = json_values.map(lambda value: json.dumps(value, ensure_ascii=False).encode())
# The package decodes the body as strict UTF-8 before checking it, so bodies it can be handed must be UTF-8: any
# text encoded, which reaches NUL, control characters and 4-byte sequences. Bodies that are not UTF-8 are compared
# with the package's HMAC primitive instead (test_signature_of_any_bytes_matches_the_package_primitive).
utf8_bodies = st.text().map(str.encode)
package_bodies = st.one_of(utf8_bodies, unicode_json_bodies)


# --- WH-1: interop with the official standardwebhooks package -----------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(secret=any_secrets, message_id=message_ids, body=package_bodies)
def test_wh1_package_verifies_our_signature(secret: str, message_id: str, body: bytes):
    timestamp = int(time.time())  # the package checks against its own clock
    headers = signed_headers([secret], message_id=message_id, timestamp=timestamp, body=body)
    assert Webhook(secret).verify(body, headers, json_parse=False) is None  # raises when the signature is refused


@settings(max_examples=1000, deadline=None)
@given(secret=any_secrets, message_id=message_ids, body=package_bodies, timestamp=st.integers(0, 2**33))
def test_wh1_we_verify_the_package_signature(secret: str, message_id: str, body: bytes, timestamp: int):
    sent_at = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = Webhook(secret).sign(message_id, sent_at, body.decode())
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    assert verify_standard_signature(secret, headers, body, now=timestamp)
    assert not verify_standard_signature(secret, headers, body + b"x", now=timestamp)


@settings(max_examples=300, deadline=None)
@given(secret=any_secrets, message_id=message_ids, body=st.binary())
def test_signature_of_any_bytes_matches_the_package_primitive(secret: str, message_id: str, body: bytes):
    package_key = Webhook(secret)._whsecret  # the key the package derives from the secret, which Webhook keeps
    digest = hmac_data(package_key, f"{message_id}.{NOW}.".encode() + body)
    assert standard_webhooks_key(secret) == package_key
    assert standard_signature([secret], message_id, NOW, body) == "v1," + base64.b64encode(digest).decode()


def test_wh1_package_refuses_our_signature_of_another_body():
    headers = signed_headers([SECRET], timestamp=int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers, json_parse=False)


def test_new_secret_has_taskhive_format_and_is_a_standard_webhooks_key():
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"whsec_[0-9a-f]{48}", secret)
        assert len(standard_webhooks_key(secret)) == 36
        assert standard_webhooks_key(secret) == Webhook(secret)._whsecret


def test_standard_webhooks_key_refuses_what_is_not_base64():
    with pytest.raises(ValueError, match="base64"):
        standard_webhooks_key("whsec_not*base64")
    with pytest.raises(ValueError, match="empty"):
        standard_webhooks_key("whsec_")


def test_standard_signature_needs_a_secret():
    with pytest.raises(ValueError):
        standard_signature([], MESSAGE_ID, NOW, BODY)


# --- WH-2: tamper matrix ------------------------------------------------------------------------------------------


def _without(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {key: value for key, value in headers.items() if key != name}


def _with(name: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {**headers, name: value}


def _flip_one_byte(body: bytes) -> bytes:
    return body[:10] + bytes([body[10] ^ 0x01]) + body[11:]


# (headers change, body change, receiver's secret) -> the receiver must refuse.
TAMPERING = {
    "body one byte changed": (lambda h: h, _flip_one_byte, SECRET),
    "body truncated": (lambda h: h, lambda body: body[:-1], SECRET),
    "id changed": (_with("webhook-id", MESSAGE_ID + "x"), lambda body: body, SECRET),
    "timestamp changed": (_with("webhook-timestamp", str(NOW + 1)), lambda body: body, SECRET),
    "wrong secret": (lambda h: h, lambda body: body, SECRET[:-1] + "0"),
    "another endpoint's secret": (lambda h: h, lambda body: body, OTHER_SECRET),
    "webhook-id missing": (_without("webhook-id"), lambda body: body, SECRET),
    "webhook-timestamp missing": (_without("webhook-timestamp"), lambda body: body, SECRET),
    "webhook-signature missing": (_without("webhook-signature"), lambda body: body, SECRET),
    "signature not base64": (_with("webhook-signature", "v1,!!notbase64"), lambda body: body, SECRET),
    "signature without version": (_with("webhook-signature", "!!"), lambda body: body, SECRET),
    "empty signature": (_with("webhook-signature", ""), lambda body: body, SECRET),
    "timestamp not an integer": (_with("webhook-timestamp", f"{NOW}.0"), lambda body: body, SECRET),
    "timestamp not a number": (_with("webhook-timestamp", "soon"), lambda body: body, SECRET),
}


@pytest.mark.parametrize("tampering", TAMPERING.values(), ids=TAMPERING.keys())
def test_wh2_tampered_delivery_is_refused(tampering):
    change_headers, change_body, receiver_secret = tampering
    headers = change_headers(signed_headers([SECRET]))
    assert not verify_standard_signature(receiver_secret, headers, change_body(BODY), now=NOW)


def test_wh2_untampered_delivery_is_accepted():
    assert verify_standard_signature(SECRET, signed_headers([SECRET]), BODY, now=NOW)


def test_wh2_signature_of_an_unknown_version_is_ignored():
    v1 = signed_headers([SECRET])["webhook-signature"]
    headers = _with("webhook-signature", v1.replace("v1,", "v2,"))(signed_headers([SECRET]))
    assert not verify_standard_signature(SECRET, headers, BODY, now=NOW)


def test_wh2_header_names_are_case_insensitive():
    headers = {name.title(): value for name, value in signed_headers([SECRET]).items()}
    assert "Webhook-Signature" in headers
    assert verify_standard_signature(SECRET, headers, BODY, now=NOW)


def test_wh2_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch):
    real_compare = hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    assert verify_standard_signature(SECRET, signed_headers([SECRET]), BODY, now=NOW)
    assert len(calls) == 1
    assert all(isinstance(side, bytes) and len(side) == 32 for side in calls[0])
    calls.clear()
    assert not verify_standard_signature(SECRET, signed_headers([SECRET]), _flip_one_byte(BODY), now=NOW)
    assert len(calls) == 1


# --- WH-3: timestamp tolerance ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-299, True), (299, True), (-300, True), (300, True), (0, True), (-301, False), (301, False), (-86400, False)],
)
def test_wh3_timestamp_tolerance(offset: int, accepted: bool):
    headers = signed_headers([SECRET], timestamp=NOW + offset)
    assert verify_standard_signature(SECRET, headers, BODY, now=NOW) is accepted


def test_wh3_tolerance_is_a_parameter():
    headers = signed_headers([SECRET], timestamp=NOW - 60)
    assert not verify_standard_signature(SECRET, headers, BODY, now=NOW, tolerance=59)
    assert verify_standard_signature(SECRET, headers, BODY, now=NOW, tolerance=60)


# --- WH-4: secret rotation ----------------------------------------------------------------------------------------


def test_wh4_rotation_signs_with_both_secrets_current_first():
    new, old = SECRET, OTHER_SECRET
    during_rotation = signed_headers([new, old])
    signatures = during_rotation["webhook-signature"].split(" ")
    assert signatures == [
        standard_signature([new], MESSAGE_ID, NOW, BODY),
        standard_signature([old], MESSAGE_ID, NOW, BODY),
    ]
    assert verify_standard_signature(new, during_rotation, BODY, now=NOW)
    assert verify_standard_signature(old, during_rotation, BODY, now=NOW)


def test_wh4_after_rotation_the_old_secret_fails():
    new, old = SECRET, OTHER_SECRET
    after_rotation = signed_headers([new])
    assert verify_standard_signature(new, after_rotation, BODY, now=NOW)
    assert not verify_standard_signature(old, after_rotation, BODY, now=NOW)


def test_wh4_package_accepts_a_rotation_header_with_either_secret():
    headers = signed_headers([SECRET, OTHER_SECRET], timestamp=int(time.time()))
    Webhook(SECRET).verify(BODY, headers, json_parse=False)
    Webhook(OTHER_SECRET).verify(BODY, headers, json_parse=False)


# --- TaskHive signature -------------------------------------------------------------------------------------------


def test_taskhive_signature_known_answer():
    # Written down once from hmac.new(SECRET.encode(), BODY, sha256): TaskHive keys with the whole secret string.
    expected = "sha256=" + hmac.new(SECRET.encode("utf-8"), BODY, hashlib.sha256).hexdigest()
    assert expected == "sha256=f048905e0afafd1e75524e2dccf25fefc7e683795911ba20d0a3fce3c8623883"
    assert taskhive_signature(SECRET, BODY) == expected


def test_taskhive_signature_depends_on_secret_and_body():
    assert taskhive_signature(SECRET, BODY) != taskhive_signature(OTHER_SECRET, BODY)
    assert taskhive_signature(SECRET, BODY) != taskhive_signature(SECRET, BODY + b" ")
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", taskhive_signature(SECRET, b""))


# --- SSRF-1: URLs and addresses -----------------------------------------------------------------------------------


def reachable(url: str, allow=()) -> bool:
    """What the pure rules say of a URL whose host is an IP literal (names are the resolver's business)."""
    parsed = parse_webhook_url(url)
    address = literal_address(parsed.host)
    assert address is not None, f"{parsed.host} should be read as an IP literal"
    return address_allowed(address, allow)


NON_PUBLIC_HOSTS = [
    "127.0.0.1",
    "[::1]",
    "0.0.0.0",
    "127.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0x7f.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "[fd00::1]",
    "[fc00::1]",
    "[fe80::1]",
    "224.0.0.1",
    "239.255.255.250",
    "[ff02::1]",
    "[::]",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "[2001:db8::1]",
    "[fec0::1]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b:1::a00:1]",  # local-use NAT64
    "[::7f00:1]",  # IPv4-compatible 127.0.0.1
    "[::ffff:0:7f00:1]",  # IPv4-translated 127.0.0.1
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo whose client is 127.0.0.1
    "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",  # full-width digits and dots: IDNA maps them to 127.0.0.1
    "127\u30020\u30020\u30021",  # ideographic full stops, which IDNA reads as dots
]


@pytest.mark.parametrize("host", NON_PUBLIC_HOSTS)
def test_ssrf1_non_public_addresses_are_refused(host: str):
    assert not reachable(f"http://{host}/hook")


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "[2606:4700::1111]", "[2001:4860:4860::8888]"])
def test_ssrf1_public_addresses_are_allowed(host: str):
    assert reachable(f"https://{host}/hook")


@pytest.mark.parametrize(
    "host",
    ["[::ffff:93.184.216.34]", "[64:ff9b::5db8:d822]", "[2002:5db8:d822::1]", "[2001:0:4136:e378:8000:63bf:a247:27dd]"],
)
def test_ssrf1_ipv6_standing_for_a_public_ipv4_host_is_allowed(host: str):
    assert reachable(f"https://{host}/hook")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1", True),
        ("[::ffff:127.0.0.1]", True),
        ("[64:ff9b::7f00:1]", True),
        ("[2002:7f00:1::]", True),
        ("10.0.0.1", False),
        ("[::1]", False),  # ::1 is IPv6 loopback, not an address in 127.0.0.0/8
        ("169.254.169.254", False),
    ],
)
def test_ssrf1_allow_list_lets_chosen_networks_through(host: str, expected: bool):
    assert reachable(f"http://{host}:8080/hook", parse_allow_cidrs("127.0.0.0/8")) is expected


def test_ssrf1_ipv6_allow_list():
    allow = parse_allow_cidrs("::1/128, fd00::/8")
    assert address_allowed("::1", allow)
    assert address_allowed("fd00::7", allow)
    assert not address_allowed("127.0.0.1", allow)


def test_address_allowed_takes_strings_and_refuses_names():
    assert address_allowed("93.184.216.34", ())
    assert not address_allowed("127.1", ())
    assert not address_allowed("fe80::1%eth0", ())  # as getaddrinfo may write a link-local address
    with pytest.raises(ValueError):
        address_allowed("example.com", ())


ipv4_addresses = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@settings(max_examples=300, deadline=None)
@given(ipv4=ipv4_addresses)
def test_ipv6_forms_of_an_ipv4_address_get_its_verdict(ipv4: ipaddress.IPv4Address):
    verdict = address_allowed(ipv4, ())
    value = int(ipv4)
    forms = [
        ipaddress.IPv6Address(0xFFFF_0000_0000 | value),  # mapped
        ipaddress.IPv6Address(0xFFFF_0000_0000_0000 | value),  # translated
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | value),  # NAT64
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("2002::")) | value << 80),  # 6to4
        ipaddress.IPv6Address(value),  # IPv4-compatible
    ]
    assert [address_allowed(form, ()) for form in forms] == [verdict] * len(forms)


REFUSED_URLS = [
    "http://user@127.0.0.1/",
    "http://user:pw@example.com/",
    "http://@example.com/",
    "file:///etc/passwd",
    "gopher://x",
    "ftp://x",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "example.com/hook",
    "//example.com/hook",
    "",
    "http://",
    "http:///hook",
    "http:example.com",
    "http://example.com:0/",
    "http://example.com:99999/",
    "http://example.com:65536/",
    "http://example.com:http/",
    "http://example.com:-1/",
    "http://exa mple.com/",
    " http://example.com/",
    "http://example.com/\n",
    "http://example.com/\thook",
    "http://example.com/\x00",
    "http://example.com/\x7f",
    "http://a..b/",
    "http://ex%41mple.com/",
    "http://[fe80::1%25eth0]/",
    "http://[::1/",
    "http://[127.0.0.1]/",
    "http://[v1.x]/",
    "http://[::1]x/",
    "http://::1/",
    "http://exa_mple.com\\@127.0.0.1/",
    "http://evil.com\\.127.0.0.1/",
    "http://" + "a" * 2048 + ".com/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_ssrf1_parse_refuses(url: str):
    with pytest.raises(WebhookUrlForbidden) as refused:
        parse_webhook_url(url)
    assert refused.value.code == "WEBHOOK_URL_FORBIDDEN"
    assert refused.value.message.startswith("Webhook URL refused: ")
    assert refused.value.suggestion


@pytest.mark.parametrize("url", [None, b"http://example.com/", 42])
def test_parse_refuses_what_is_not_a_string(url):
    with pytest.raises(WebhookUrlForbidden, match="string"):
        parse_webhook_url(url)


def test_parse_accepts_urls_up_to_2048_characters():
    prefix = "https://example.com/"
    assert parse_webhook_url(prefix + "a" * (2048 - len(prefix))).target == "/" + "a" * (2048 - len(prefix))
    with pytest.raises(WebhookUrlForbidden, match="2048"):
        parse_webhook_url(prefix + "a" * (2049 - len(prefix)))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com", WebhookUrl("https", "example.com", 443, "/")),
        ("HTTP://Example.COM:8080/a/b?c=1&d=2#frag", WebhookUrl("http", "example.com", 8080, "/a/b?c=1&d=2")),
        ("http://example.com?x=1", WebhookUrl("http", "example.com", 80, "/?x=1")),
        ("http://example.com:/x", WebhookUrl("http", "example.com", 80, "/x")),
        ("https://hooks.example.com./in#", WebhookUrl("https", "hooks.example.com.", 443, "/in")),
        ("https://bücher.example/ä?q=ü", WebhookUrl("https", "xn--bcher-kva.example", 443, "/%C3%A4?q=%C3%BC")),
        ("http://[2606:4700:0::1111]:8443/", WebhookUrl("http", "2606:4700::1111", 8443, "/")),
        ("http://[::FFFF:127.0.0.1]/", WebhookUrl("http", "::ffff:7f00:1", 80, "/")),
        ("http://2130706433/", WebhookUrl("http", "127.0.0.1", 80, "/")),
        ("http://0x7f.1:9000/", WebhookUrl("http", "127.0.0.1", 9000, "/")),
        ("http://example.com:65535/%20x", WebhookUrl("http", "example.com", 65535, "/%20x")),
    ],
)
def test_parse_takes_urls_apart(url: str, expected: WebhookUrl):
    assert parse_webhook_url(url) == expected


@settings(max_examples=500, deadline=None)
@given(url=st.one_of(st.text(), st.text().map(lambda tail: "http://" + tail), st.text().map(lambda t: "https://x" + t)))
def test_parse_refuses_or_returns_ascii_parts(url: str):
    try:
        parsed = parse_webhook_url(url)
    except WebhookUrlForbidden:
        return
    assert parsed.scheme in ("http", "https")
    assert 1 <= parsed.port <= 65535
    for part in (parsed.host, parsed.target, parsed.authority()):
        assert part and part.isascii() and not any(char.isspace() for char in part)
    assert parsed.target.startswith("/")


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        ("http://example.com/", "example.com"),
        ("https://example.com/", "example.com"),
        ("http://example.com:80/", "example.com"),
        ("https://example.com:8443/", "example.com:8443"),
        ("http://example.com:443/", "example.com:443"),
        ("https://example.com:80/", "example.com:80"),
        ("http://[2606:4700::1111]/", "[2606:4700::1111]"),
        ("https://[2606:4700::1111]:8443/", "[2606:4700::1111]:8443"),
        ("http://93.184.216.34:8080/", "93.184.216.34:8080"),
    ],
)
def test_authority_for_the_host_header(url: str, authority: str):
    assert parse_webhook_url(url).authority() == authority


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xdeadbeef", "222.173.190.239"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_literal_address_reads_every_resolver_form(host: str, address: str):
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host", ["example.com", "deadbeef", "face.cafe", "1.2.3.4.5", "08", "127.0.0.1 x.example", "", "::g", "1e3"]
)
def test_literal_address_is_none_for_names(host: str):
    assert literal_address(host) is None


def test_parse_allow_cidrs():
    assert parse_allow_cidrs("") == ()
    assert parse_allow_cidrs("  ") == ()
    assert parse_allow_cidrs("127.0.0.1/32, ::1/128") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_allow_cidrs("10.0.0.5,fd00::1") == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("fd00::1/128"),
    )
    assert parse_allow_cidrs("127.0.0.0/8,") == (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize("bad", ["nonsense", "10.0.0.1/8", "127.1", "10.0.0.0/33"])
def test_parse_allow_cidrs_names_the_bad_item(bad: str):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_allow_cidrs(f"127.0.0.0/8, {bad}")


# --- retry schedule -----------------------------------------------------------------------------------------------


def test_schedule_is_standard_webhooks():
    assert RETRY_SCHEDULE_SECONDS == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8


@pytest.mark.parametrize("attempts_made", range(1, 8))
def test_retry_delay_is_within_ten_percent_of_the_schedule(attempts_made: int):
    scheduled = RETRY_SCHEDULE_SECONDS[attempts_made - 1]
    rng = random.Random(attempts_made)
    delays = [retry_delay(attempts_made, rng=rng) for _ in range(200)]
    assert all(scheduled * 0.9 <= delay <= scheduled * 1.1 for delay in delays)
    assert len(set(delays)) > 1  # jittered
    assert retry_delay(attempts_made, jitter=0) == scheduled


@pytest.mark.parametrize("attempts_made", [MAX_ATTEMPTS, MAX_ATTEMPTS + 1, 100])
def test_retry_delay_is_none_when_the_schedule_is_exhausted(attempts_made: int):
    assert retry_delay(attempts_made) is None


@pytest.mark.parametrize("attempts_made", [0, -1])
def test_retry_delay_needs_a_failed_attempt(attempts_made: int):
    with pytest.raises(ValueError):
        retry_delay(attempts_made)


def test_retry_delay_scale_compresses_time():
    assert retry_delay(2, scale=0.001, jitter=0) == pytest.approx(0.3)
    assert 0.27 <= retry_delay(7, scale=0.0001) <= 3.96
    assert retry_delay(1, rng=random.Random(7)) == retry_delay(1, rng=random.Random(7))


@pytest.mark.parametrize(("scale", "jitter"), [(-1.0, 0.1), (1.0, -0.1), (1.0, 1.5)])
def test_retry_delay_refuses_bad_parameters(scale: float, jitter: float):
    with pytest.raises(ValueError):
        retry_delay(1, scale=scale, jitter=jitter)


RETRY_AFTER_NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-1", None),
        ("abc", None),
        ("7.5", None),
        ("", None),
        (None, None),
        (format_datetime(RETRY_AFTER_NOW + timedelta(seconds=10), usegmt=True), 10.0),
        (format_datetime(RETRY_AFTER_NOW - timedelta(seconds=10), usegmt=True), 0.0),
        ("Thursday, 01-Jan-26 12:00:30 GMT", 30.0),  # RFC 850, obsolete but still to be read
        ("Thu Jan  1 12:00:45 2026", 45.0),  # asctime
        (str(MAX_RETRY_AFTER_SECONDS + 1), MAX_RETRY_AFTER_SECONDS),
        ("9" * 5000, MAX_RETRY_AFTER_SECONDS),
        (format_datetime(RETRY_AFTER_NOW + timedelta(days=30), usegmt=True), MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None):
    assert parse_retry_after(value, RETRY_AFTER_NOW) == seconds
