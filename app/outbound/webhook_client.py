"""The one place Agora makes outbound HTTP requests: webhook deliveries to URLs that agents chose.

Such a URL is attacker-controlled input, so every request goes through the same guards (OWASP SSRF):

* the URL is parsed strictly and every address its host resolves to must be public (or inside the operator's
  allow list) — checked at registration and again before every delivery, because DNS answers change;
* the request connects to the address that was checked, not to whatever DNS answers a moment later: the IP goes
  in the request URL, the name only in the Host header and in TLS (SNI and the certificate check), so a DNS
  rebinding between the check and the connect cannot reach another host;
* redirects are never followed (a 3xx could point anywhere, internal hosts included);
* one deadline bounds the whole attempt (resolve, connect, send, read), and at most `max_response_bytes` of the
  response are read, uncompressed, so a slow or huge answer costs neither a worker nor memory;
* proxy environment variables are ignored and no cookies are kept between deliveries (they would leak from one
  receiver to another).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import ipaddress
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import httpx

from domain.webhooks import (
    IPAddress,
    IPNetwork,
    WebhookUrl,
    WebhookUrlForbidden,
    address_allowed,
    literal_address,
    parse_webhook_url,
)

Resolver = Callable[[str, int], Awaitable[list[str]]]

SNIPPET_CHARS = 1024
ERROR_CHARS = 200


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's A and AAAA addresses, in the order getaddrinfo prefers (RFC 6724), without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: AttemptOutcome
    status: int | None  # HTTP status when a response arrived
    duration_ms: int
    snippet: str | None  # the start of the response body, when a response arrived
    error: str | None  # why it is not a success, short and human-readable
    retry_after: str | None  # the response's raw Retry-After header


class WebhookClient:
    def __init__(
        self,
        *,
        allow: tuple[IPNetwork, ...] = (),
        resolver: Resolver = system_resolver,
        timeout: float = 10.0,
        max_response_bytes: int = 65536,
        user_agent: str = "Agora-Webhooks/1.0",
    ) -> None:
        self._allow = allow
        self._resolver = resolver
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._user_agent = user_agent
        self._http_client: httpx.AsyncClient | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        """Made on first use (building its TLS context takes ~80 ms, and an API process may never send)."""
        if self._http_client is None:
            # One client for every delivery so connections are reused; sized for ~64 sends at once. httpx's own
            # timeouts are per phase, so they only back up the deadline post() puts around the whole attempt.
            self._http_client = httpx.AsyncClient(
                verify=True,
                trust_env=False,  # never route through a proxy named in the environment
                follow_redirects=False,
                timeout=httpx.Timeout(self._timeout),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                # Keep no cookies: one receiver's would be sent to the next receiver on the same IP.
                cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
                headers={"User-Agent": self._user_agent},
            )
        return self._http_client

    async def check_url(self, url: str) -> WebhookUrl:
        """The parsed URL if it may receive deliveries now; `WebhookUrlForbidden` with the reason otherwise."""
        checked, _ = await self._check(url)
        return checked

    async def _check(self, url: str) -> tuple[WebhookUrl, IPAddress]:
        """The parsed URL and the address to connect to: the first of the host's addresses, all of which pass."""
        checked = parse_webhook_url(url)
        literal = literal_address(checked.host)
        addresses = [literal] if literal is not None else await self._resolve(checked)
        for address in addresses:
            # Every address must pass, not just the one we will use: a name that also points inside is refused.
            if not address_allowed(address, self._allow):
                raise WebhookUrlForbidden(f"address {address} is not public")
        return checked, addresses[0]

    async def _resolve(self, checked: WebhookUrl) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self._timeout):
                answers = await self._resolver(checked.host, checked.port)
        except (OSError, TimeoutError):
            raise WebhookUrlForbidden("host does not resolve") from None
        if not answers:
            raise WebhookUrlForbidden("host does not resolve")
        try:
            return [ipaddress.ip_address(answer) for answer in answers]
        except ValueError:
            raise WebhookUrlForbidden("host resolves to an invalid address") from None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """One delivery attempt. Never raises for anything the receiver or the network does: the outcome says."""
        started = time.monotonic()
        status: int | None = None
        retry_after: str | None = None

        def result(outcome: AttemptOutcome, error: str | None, snippet: str | None = None) -> SendResult:
            duration_ms = round((time.monotonic() - started) * 1000)
            return SendResult(outcome, status, duration_ms, snippet, error and error[:ERROR_CHARS], retry_after)

        try:
            async with asyncio.timeout(self._timeout):
                checked, address = await self._check(url)
                request = self._pinned_request(checked, address, body, headers)
                response = await self._http.send(request, stream=True)
                try:
                    status = response.status_code
                    retry_after = response.headers.get("Retry-After")
                    received = await self._read_capped(response)
                finally:
                    await response.aclose()
        except WebhookUrlForbidden as refusal:
            return result(AttemptOutcome.BLOCKED, refusal.reason)
        except (TimeoutError, httpx.TimeoutException):
            return result(AttemptOutcome.TIMEOUT, f"timed out after {self._timeout} s")
        except (httpx.HTTPError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return result(AttemptOutcome.NETWORK_ERROR, reason)

        snippet = received.decode("utf-8", errors="replace")[:SNIPPET_CHARS]
        code = response.status_code
        if 200 <= code < 300:
            return result(AttemptOutcome.SUCCEEDED, None, snippet)
        if 300 <= code < 400:  # never followed: the Location could name any host, internal ones included
            return result(AttemptOutcome.FAILED, f"redirect not followed ({code})", snippet)
        return result(AttemptOutcome.FAILED, f"HTTP {code}", snippet)

    def _pinned_request(
        self, checked: WebhookUrl, address: IPAddress, body: bytes, headers: Mapping[str, str]
    ) -> httpx.Request:
        """A POST to `address` itself (no second DNS lookup that could answer differently), named as the URL's host."""
        host = f"[{address}]" if address.version == 6 else str(address)
        request_headers = httpx.Headers({"Content-Type": "application/json", "Accept-Encoding": "identity"})
        request_headers.update(headers)
        request_headers["Host"] = checked.authority()
        extensions: dict[str, str] = {}
        if checked.scheme == "https":
            # TLS speaks to the name, not the IP: SNI and the certificate check both use it.
            extensions["sni_hostname"] = checked.host
            # The pool keys connections by (scheme, IP, port) alone, so a TLS connection verified for one name
            # would be reused for another name on the same IP (shared hosting): its deliveries would go to a
            # server that never proved it is that name. Close each TLS connection after its delivery instead.
            request_headers["Connection"] = "close"
        return self._http.build_request(
            "POST",
            f"{checked.scheme}://{host}:{checked.port}{checked.target}",
            content=body,
            headers=request_headers,
            extensions=extensions,
        )

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """At most `max_response_bytes` of the body as sent (no decompression: a small gzip can expand hugely)."""
        received = bytearray()
        # httpx types aiter_raw as an AsyncIterator; it is an async generator, which aclosing needs (its aclose).
        raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
        async with contextlib.aclosing(raw) as chunks:
            async for chunk in chunks:
                received += chunk[: self._max_response_bytes - len(received)]
                if len(received) >= self._max_response_bytes:
                    break  # closing the response drops the connection; the rest is never read
        return bytes(received)

    async def aclose(self) -> None:
        client, self._http_client = self._http_client, None
        if client is not None:
            await client.aclose()
