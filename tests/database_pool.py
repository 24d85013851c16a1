"""A database of its own for every in-process test, cloned from a migrated template.

The app commits for real in tests (no transaction of the test's wraps the request's), so each test needs a
database nobody else writes to. `CREATE DATABASE ... TEMPLATE` copies the migrated template's files; a background
thread keeps the next few ready and drops the used ones, so a test rarely waits for either.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import urllib.parse

import psycopg

from app.repo import migrate
from tests.support import database_named, sibling_database

READY_AHEAD = 4  # databases cloned before a test asks for them
CLONERS = 2  # threads cloning (each on its own connection): one clone takes about as long as a short test
TEMPLATE = "agora_template"


class TestDatabases:
    """Hands out fresh migrated databases on the server of `database_url`."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, database_url: str) -> None:
        self._admin_url = database_url
        migrate.upgrade(sibling_database(database_url, TEMPLATE))
        self._prefix = f"agora_t{os.getpid()}_"
        self._numbers = itertools.count(1)
        self._ready: queue.Queue[str | Exception] = queue.Queue(maxsize=READY_AHEAD)
        self._to_drop: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._cloners = [
            threading.Thread(target=self._clone_ahead, name=f"test-db-cloner-{n}", daemon=True) for n in range(CLONERS)
        ]
        self._dropper = threading.Thread(target=self._drop_used, name="test-db-dropper", daemon=True)
        for thread in [*self._cloners, self._dropper]:
            thread.start()

    def take(self) -> str:
        ready = self._ready.get(timeout=120)
        if isinstance(ready, Exception):
            raise ready
        return database_named(self._admin_url, ready)

    def give_back(self, url: str) -> None:
        self._to_drop.put(urllib.parse.urlsplit(url).path.lstrip("/"))

    def close(self) -> None:
        self._stopping.set()
        self._drop_unused()  # frees the queue, so that a cloner waiting to hand one over sees the stop
        for thread in self._cloners:
            thread.join(timeout=5)
        self._drop_unused()
        self._to_drop.put(None)
        self._dropper.join(timeout=120)

    def _drop_unused(self) -> None:
        while True:
            try:
                ready = self._ready.get_nowait()
            except queue.Empty:
                return
            if isinstance(ready, str):
                self._to_drop.put(ready)

    def _clone_ahead(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as admin:
            while not self._stopping.is_set():
                name = f"{self._prefix}{next(self._numbers)}"
                try:
                    # WAL_LOG (the default), not FILE_COPY: for a template of a few megabytes 40 ms against 320 ms,
                    # since FILE_COPY checkpoints twice (measured on the embedded PostgreSQL).
                    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
                except psycopg.Error as error:
                    self._ready.put(error)
                    return
                self._hand_over(name)

    def _hand_over(self, name: str) -> None:
        while not self._stopping.is_set():
            try:
                self._ready.put(name, timeout=0.5)
                return
            except queue.Full:
                continue
        self._to_drop.put(name)

    def _drop_used(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as admin:
            while (name := self._to_drop.get()) is not None:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
