"""A local webhook receiver for live tests and benchmarks: asyncio speaking just enough HTTP/1.1 (keep-alive,
Content-Length bodies), on a free loopback port, recording every request and answering as scripted.

    receiver = Receiver(Reply(500), Reply(500), then=Reply(200))  # fails twice, then accepts
    async with receiver:
        url = receiver.url("/hook")
        ...
        await receiver.wait_for(3)

Each request gets the next reply of `script`, then `then` for ever after (both may be changed while running:
`receiver.then = Reply(200)` makes a failing receiver recover). A reply can be delayed (`delay`), hang until the
client gives up (`hang=True`), redirect (`Reply(302, headers={"Location": ...})`), be a 410, or a 429 with a
Retry-After. Run as a module it is a plain 200-receiver in a process of its own, for benchmarks:

    python -m tests.webhook_receiver [--port 0]      # prints "listening on <port>", then serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: How long a hanging reply holds the connection at most when the client never gives up.
HANG_LIMIT_SECONDS = 120.0


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (the client may give up meanwhile)
    hang: bool = False  # never answer: hold the connection until the client closes it


@dataclass
class Received:
    """One request as it arrived, and what became of it."""

    number: int  # 0-based, over the receiver's life
    at: float  # time.time() when the whole request had arrived
    monotonic: float  # time.monotonic() at the same moment
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    reply: Reply
    answered: bool = False  # the reply was written to a client still connected
    gone_at: float | None = None  # time.monotonic() when the client hung up before the reply

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


class Receiver:
    def __init__(
        self,
        *script: Reply,
        then: Reply | None = None,
        respond: Callable[[Received], Reply] | None = None,
        record: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.script = list(script)
        self.then = then or Reply()
        self.respond = respond  # when set, decides every reply itself
        self.record = record  # False: count only (benchmarks)
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self.hits = 0
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Condition()

    # --- life ---------------------------------------------------------------------------------------------------

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, self.host, 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # each connection's handler sees the end of its stream and returns
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=2)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    # --- what arrived -------------------------------------------------------------------------------------------

    def by_webhook_id(self) -> Counter[str]:
        return Counter(r.webhook_id for r in self.requests if r.webhook_id)

    def answered(self, status: int | None = None) -> list[Received]:
        return [r for r in self.requests if r.answered and (status is None or r.reply.status == status)]

    async def wait_until(self, predicate: Callable[[Receiver], bool], within: float = 10.0) -> None:
        """Until `predicate(self)` holds (checked on every request and reply); TimeoutError after `within` s."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def wait_for(self, count: int, within: float = 10.0, *, answered_status: int | None = None) -> None:
        """Until `count` requests arrived (or, with `answered_status`, were answered with that status)."""
        if answered_status is None:
            await self.wait_until(lambda r: r.hits >= count, within)
        else:
            await self.wait_until(lambda r: len(r.answered(answered_status)) >= count, within)

    # --- serving ------------------------------------------------------------------------------------------------

    def _next_reply(self, request: Received) -> Reply:
        if self.respond is not None:
            return self.respond(request)
        if request.number < len(self.script):
            return self.script[request.number]
        return self.then

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:  # keep-alive: one connection carries many requests
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                number = self.hits
                self.hits += 1
                request = Received(number, time.time(), time.monotonic(), method, target, headers, body, Reply())
                request.reply = reply = self._next_reply(request)
                if self.record:
                    self.requests.append(request)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await self._notify()
                    wait = HANG_LIMIT_SECONDS if reply.hang else reply.delay
                    if wait > 0 and await _client_leaves_within(reader, wait):
                        request.gone_at = time.monotonic()
                        return
                    writer.write(_encode(reply, close=headers.get("connection") == "close"))
                    await writer.drain()
                    request.answered = True
                finally:
                    self.in_flight -= 1
                    await self._notify()
                if headers.get("connection") == "close":
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            return  # the client went away, or spoke something else
        except asyncio.CancelledError:
            # Stopping: end quietly (Python 3.11's stream callback would log a handler that ends cancelled).
            return
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()


async def _client_leaves_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait `seconds`; True as soon as the client closes the connection instead (it gave up on us)."""
    try:
        data = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""  # a byte here would be a pipelined request, which no webhook client sends


_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 429: "Too Many Requests", 500: "Error"}


def _encode(reply: Reply, *, close: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
        f"Content-Length: {len(reply.body)}",
        "Content-Type: application/json",
        *(f"{name}: {value}" for name, value in reply.headers.items()),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body


async def _serve_forever(port: int) -> None:
    receiver = Receiver(record=False)
    receiver._server = await asyncio.start_server(receiver._serve, receiver.host, port, backlog=4096)
    receiver.port = receiver._server.sockets[0].getsockname()[1]
    print(f"listening on {receiver.port}", flush=True)
    await receiver._server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local webhook receiver that answers 200 to everything.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port))


if __name__ == "__main__":
    main()
