"""The webhook client against real HTTP receivers on free loopback ports (WH-7, WH-8, SSRF-1..5).

Each receiver is a few lines of asyncio speaking just enough HTTP/1.1, so a test can make it misbehave (sleep,
redirect, drip, flood) and count what reached it. Nothing here leaves the machine: names resolve through injected
resolvers, and "public" addresses are only ever checked, never connected to.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.outbound.webhook_client import AttemptOutcome, SendResult, WebhookClient, system_resolver
from domain.webhooks import WebhookUrlForbidden, parse_allow_cidrs

LOOPBACK = parse_allow_cidrs("127.0.0.0/8")
PUBLIC = "93.184.215.14"  # a public address: only ever checked here, never connected to
TIMEOUT = 1.0


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def answer(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Handler:
    """A handler that answers every request with the same response."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]

    async def handle(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    return handle


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on a free port: records every connection and request, answers with `handler`."""

    handler: Handler = field(default_factory=lambda: answer(200, b'{"ok":true}'))
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:  # keep-alive: one connection may carry several requests
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = request_line.split(" ")
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body)
                self.requests.append(request)
                await self.handler(request, writer)
                if headers.get("connection") == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away
        finally:
            self._tasks.discard(task)
            writer.close()


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resolving(answers: Mapping[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver answering from `answers`; any other name does not resolve."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"an IP literal must not be resolved ({host})")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def start(handler: Handler | None = None, **options: object) -> Receiver:
        receiver = Receiver(**({"handler": handler} if handler else {}), **options)  # type: ignore[arg-type]
        started.append(await receiver.start())
        return receiver

    yield start
    for receiver in started:
        await receiver.close()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., WebhookClient]]:
    clients: list[WebhookClient] = []

    def make(**options: object) -> WebhookClient:
        clients.append(WebhookClient(**{"timeout": TIMEOUT, **options}))  # type: ignore[arg-type]
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


# --- delivery -----------------------------------------------------------------------------------------------------


async def test_a_2xx_is_delivered_byte_identical_to_the_named_host(serve, make_client) -> None:
    receiver = await serve()
    client = make_client(allow=LOOPBACK, resolver=resolving({"hooks.test": ["127.0.0.1"]}))
    body = '{"event":"task.created","data":{"title":"Ünïcødé ✓"}}'.encode()
    headers = {"X-TaskHive-Signature": "sha256=abc", "webhook-id": "msg_1", "Host": "evil.test"}

    result = await client.post(receiver.url("/hook/a%20b?x=1&y=%2F", host="hooks.test"), body, headers)

    assert result == SendResult(AttemptOutcome.SUCCEEDED, 200, result.duration_ms, '{"ok":true}', None, None)
    assert 0 <= result.duration_ms < 1000
    [request] = receiver.requests
    assert (request.method, request.target, request.body) == ("POST", "/hook/a%20b?x=1&y=%2F", body)
    # The name is only in the Host header (the connection went to the checked address); callers cannot change it.
    assert request.headers["host"] == f"hooks.test:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(body))
    assert request.headers["x-taskhive-signature"] == "sha256=abc"
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["user-agent"] == "Agora-Webhooks/1.0"
    assert request.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (500, {}, "HTTP 500", None),
        (410, {}, "HTTP 410", None),
        (429, {"Retry-After": "7"}, "HTTP 429", "7"),
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "HTTP 503", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
async def test_other_statuses_fail_with_status_and_retry_after(
    serve, make_client, status: int, headers: dict[str, str], error: str, retry_after: str | None
) -> None:
    receiver = await serve(answer(status, b"nope", headers))
    result = await make_client(allow=LOOPBACK).post(receiver.url(), b"{}", {})
    assert (result.outcome, result.status, result.error) == (AttemptOutcome.FAILED, status, error)
    assert (result.snippet, result.retry_after) == ("nope", retry_after)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(serve, make_client, status: int) -> None:
    """WH-8 / SSRF-2: a receiver cannot bounce the delivery to an internal address."""
    sentinel = await serve()
    receiver = await serve(answer(status, headers={"Location": sentinel.url("/admin")}))
    result = await make_client(allow=LOOPBACK).post(receiver.url(), b"{}", {})
    assert (result.outcome, result.status) == (AttemptOutcome.FAILED, status)
    assert result.error == f"redirect not followed ({status})"
    assert len(receiver.requests) == 1
    assert sentinel.connections == 0


async def test_connection_refused_is_a_network_error(make_client) -> None:
    result = await make_client(allow=LOOPBACK).post(f"http://127.0.0.1:{free_port()}/hook", b"{}", {})
    assert (result.outcome, result.status, result.snippet) == (AttemptOutcome.NETWORK_ERROR, None, None)
    assert result.error


async def test_connections_are_reused_but_cookies_are_not_kept(serve, make_client) -> None:
    receiver = await serve(answer(200, b"ok", {"Set-Cookie": "session=secret; Path=/"}))
    client = make_client(allow=LOOPBACK)
    for _ in range(3):
        assert (await client.post(receiver.url(), b"{}", {})).outcome is AttemptOutcome.SUCCEEDED
    assert receiver.connections == 1
    assert all("cookie" not in request.headers for request in receiver.requests)


# --- time and size bounds -----------------------------------------------------------------------------------------


async def test_a_receiver_that_does_not_answer_times_out(serve, make_client) -> None:
    """WH-7."""

    async def hang(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    receiver = await serve(hang)
    started = time.monotonic()
    result = await make_client(allow=LOOPBACK, timeout=0.5).post(receiver.url(), b"{}", {})
    assert time.monotonic() - started < 0.5 + 0.5
    assert (result.outcome, result.status, result.error) == (AttemptOutcome.TIMEOUT, None, "timed out after 0.5 s")


async def test_the_deadline_covers_the_whole_attempt_not_each_read(serve, make_client) -> None:
    """A byte every 50 ms never trips a per-read timeout; the deadline on the whole attempt still ends it."""

    async def drip(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        for _ in range(1_000_000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    receiver = await serve(drip)
    started = time.monotonic()
    # wait_for only keeps a regression from hanging the suite for the drip's 14 hours.
    result = await asyncio.wait_for(make_client(allow=LOOPBACK, timeout=0.5).post(receiver.url(), b"{}", {}), 5)
    assert time.monotonic() - started < 0.5 + 0.5
    assert (result.outcome, result.status) == (AttemptOutcome.TIMEOUT, 200)


async def test_at_most_max_response_bytes_are_read(serve, make_client) -> None:
    """SSRF-5: a 50 MB answer is cut off after max_response_bytes; the receiver sees the client stop reading."""
    total = 50 * 1024 * 1024
    sent = 0
    stopped = asyncio.Event()

    async def flood(request: Request, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        chunk = b"y" * 65536
        try:
            while sent < total:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0)
        except ConnectionError:
            stopped.set()
            raise

    receiver = await serve(flood)
    result = await make_client(allow=LOOPBACK, max_response_bytes=1000).post(receiver.url(), b"{}", {})
    assert (result.outcome, result.status, result.snippet) == (AttemptOutcome.SUCCEEDED, 200, "y" * 1000)
    await asyncio.wait_for(stopped.wait(), 5)
    assert sent < total // 2  # what the kernel's socket buffers took; the client itself kept 1000 bytes


async def test_compressed_answers_are_not_decompressed(serve, make_client) -> None:
    """A 20 KB gzip that would expand to 20 MB stays 20 KB: the client asks for identity and reads raw bytes."""
    bomb = gzip.compress(b"0" * 20_000_000)
    receiver = await serve(answer(200, bomb, {"Content-Encoding": "gzip"}))
    result = await make_client(allow=LOOPBACK).post(receiver.url(), b"{}", {})
    assert result.outcome is AttemptOutcome.SUCCEEDED
    assert result.snippet is not None and not result.snippet.startswith("0000")


# --- which addresses may be reached (SSRF-1, -3, -4) --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/admin",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/",
    ],
)
async def test_internal_literals_are_refused_without_dns(make_client, url: str) -> None:
    with pytest.raises(WebhookUrlForbidden, match="is not public"):
        await make_client(resolver=no_dns).check_url(url)


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["::1"], "::1"),
        ([PUBLIC, "10.0.0.5"], "10.0.0.5"),  # one internal address is enough to refuse
        (["::ffff:169.254.169.254", PUBLIC], "::ffff:a9fe:a9fe"),
    ],
)
async def test_names_resolving_to_any_internal_address_are_refused(make_client, answers, refused) -> None:
    client = make_client(resolver=resolving({"localhost": answers}))
    with pytest.raises(WebhookUrlForbidden) as refusal:
        await client.check_url("https://localhost/hook")
    assert refusal.value.reason == f"address {refused} is not public"
    assert refusal.value.code == "WEBHOOK_URL_FORBIDDEN"


async def test_a_name_resolving_only_to_public_addresses_is_accepted(make_client) -> None:
    client = make_client(resolver=resolving({"hooks.example.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}))
    checked = await client.check_url("https://Hooks.Example.com/agora?x=1")
    assert (checked.scheme, checked.host, checked.port, checked.target) == (
        "https",
        "hooks.example.com",
        443,
        "/agora?x=1",
    )


async def test_unresolvable_names_are_refused(make_client) -> None:
    async def nothing(host: str, port: int) -> list[str]:
        return []

    for resolver in (resolving({}), nothing, system_resolver):
        with pytest.raises(WebhookUrlForbidden, match="host does not resolve"):
            await make_client(resolver=resolver).check_url("http://agora-test.invalid/")


async def test_the_system_resolver_answers_without_duplicates() -> None:
    addresses = await system_resolver("localhost", 80)
    assert "127.0.0.1" in addresses
    assert len(addresses) == len(set(addresses))


async def test_loopback_is_delivered_only_when_allow_listed(serve, make_client) -> None:
    """SSRF-4: the operator's allow list is the only way to reach an internal receiver."""
    receiver = await serve()
    refused = await make_client().post(receiver.url(), b"{}", {})
    assert (refused.outcome, refused.status) == (AttemptOutcome.BLOCKED, None)
    assert refused.error == "address 127.0.0.1 is not public"
    assert receiver.connections == 0
    delivered = await make_client(allow=LOOPBACK).post(receiver.url(), b"{}", {})
    assert delivered.outcome is AttemptOutcome.SUCCEEDED
    assert len(receiver.requests) == 1


async def test_a_name_rebound_to_loopback_after_the_check_is_not_reached(serve, make_client) -> None:
    """SSRF-3: public when registered, loopback at delivery time: post checks again and refuses."""
    sentinel = await serve()
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    client = make_client(resolver=rebinding, timeout=0.5)
    url = sentinel.url(host="rebind.test")
    await client.check_url(url)
    result = await client.post(url, b"{}", {})
    assert result.outcome is not AttemptOutcome.SUCCEEDED
    assert result.outcome is AttemptOutcome.BLOCKED
    assert sentinel.connections == 0


async def test_the_connection_goes_to_the_checked_address_not_a_fresh_lookup(serve, make_client) -> None:
    """SSRF-3 pinning: "localhost" is 127.0.0.1 to the system, 127.0.0.2 to the check; only 127.0.0.2 is reached."""
    try:
        pinned = await serve(host="127.0.0.2")
        sentinel = await serve(host="127.0.0.1", port=pinned.port)
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2 and 127.0.0.1 with one port: {exc}")
    client = make_client(allow=LOOPBACK, resolver=resolving({"localhost": ["127.0.0.2"]}))
    result = await client.post(pinned.url(host="localhost"), b"{}", {})
    assert result.outcome is AttemptOutcome.SUCCEEDED
    assert [request.headers["host"] for request in pinned.requests] == [f"localhost:{pinned.port}"]
    assert sentinel.connections == 0


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A TLS server context whose certificate names hooks.test and is signed by nobody the client trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=hooks.test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-addext", "subjectAltName=DNS:hooks.test"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls


async def test_https_names_the_host_in_sni_and_verifies_its_certificate(
    serve, make_client, self_signed: ssl.SSLContext
) -> None:
    """TLS goes to the checked IP but speaks to the name: SNI carries it, and a certificate nobody signed fails."""
    names: list[str | None] = []
    self_signed.sni_callback = lambda sock, name, context: names.append(name)  # type: ignore[assignment,misc,return-value]
    receiver = await serve(tls=self_signed)

    client = make_client(allow=LOOPBACK, resolver=resolving({"hooks.test": ["127.0.0.1"]}))
    result = await client.post(receiver.url(host="hooks.test"), b"{}", {})

    assert result.outcome is AttemptOutcome.NETWORK_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert names == ["hooks.test"]
    assert receiver.requests == []
