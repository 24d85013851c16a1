"""A small Server-Sent Events reader for the live tests (httpx streaming, one frame at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass
class Frame:
    event: str | None
    id: str | None
    data: dict | None
    comment: bool = False

    @property
    def event_id(self) -> int | None:
        return int(self.id) if self.id else None


class SSEStream:
    """Opened by `open_stream`; `next()` returns the next frame (heartbeats included when asked for)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        comment = False
        async for line in self._lines:
            if line == "":
                if fields or comment:
                    data = fields.get("data")
                    await self.frames.put(
                        Frame(fields.get("event"), fields.get("id"), json.loads(data) if data else None, comment)
                    )
                fields, comment = {}, False
                continue
            if line.startswith(":"):
                comment = True
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    async def next(self, within: float = 10.0, *, heartbeats: bool = False) -> Frame:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            frame = await asyncio.wait_for(self.frames.get(), remaining)
            if frame.comment and not heartbeats:
                continue
            if frame.event is None and frame.data is None and not frame.comment:
                continue  # the retry: preamble
            return frame

    async def events(self, count: int, within: float = 10.0) -> list[Frame]:
        return [await self.next(within) for _ in range(count)]

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._reader
        await self.response.aclose()


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, url: str, key: str, *, last_event_id: str | None = None
) -> AsyncIterator[SSEStream]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    request = http.build_request("GET", url, headers=headers)
    response = await http.send(request, stream=True)
    stream = SSEStream(response)
    try:
        yield stream
    finally:
        await stream.close()
