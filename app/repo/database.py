"""Where the database is: a configured URL, or an embedded PostgreSQL (pgserver) in the data folder.

pgserver shares one server among every process that asks for the same folder (server, CLI, tests) and stops it
when the last of them exits.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

from app.config import Settings

DATABASE_NAME = "agora"

_embedded: dict[Path, object] = {}


def embedded_server_url(data_dir: Path, database: str = DATABASE_NAME, *, delete_on_exit: bool = False) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return a URL for `database`, creating it.

    The server stops when the last process using it exits; `delete_on_exit` also removes its folder (tests).
    """
    import pgserver  # imported here: a configured database never needs it

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded.get(data_dir)
    if server is None:
        _forget_dead_users(pgserver, data_dir)
        server = _embedded[data_dir] = pgserver.get_server(
            data_dir, cleanup_mode="delete" if delete_on_exit else "stop"
        )
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


def _forget_dead_users(pgserver, data_dir: Path) -> None:
    """Drop processes that died without saying goodbye (SIGKILL) from pgserver's list of users of the server.

    pgserver stops the server when the last process on that list exits; a dead entry would keep it running
    forever after the real last user has gone.
    """
    import json

    import psutil

    handles = data_dir / ".handle_pids.json"
    with pgserver.PostgresServer._lock:  # the lock pgserver itself takes around that list
        if not handles.exists():
            return
        alive = [pid for pid in json.loads(handles.read_text() or "[]") if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))


def resolve_database_url(settings: Settings) -> str:
    """The URL to connect to: the configured one, else the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded_server_url(settings.data_path / "postgres")


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL on the psycopg 3 driver (Alembic's input)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+psycopg"))
