"""Where the database is: a configured URL, or an embedded PostgreSQL (pgserver) in the data folder; and where
its data key is: AGORA_SECRET_KEY, or for the embedded database a key file beside it.

pgserver shares one server among every process that asks for the same folder (server, CLI, tests) and stops it
when the last of them exits.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from app.config import ENV_PREFIX, Settings, SettingsError
from app.crypto import HOW_TO_MAKE_ONE, KeyRing, KeyRingError, new_key_entry

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DATABASE_NAME = "agora"

_embedded: dict[Path, PostgresServer] = {}


def embedded_server_url(data_dir: Path, database: str = DATABASE_NAME, *, delete_on_exit: bool = False) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return a URL for `database`, creating it.

    The server stops when the last process using it exits; `delete_on_exit` also removes its folder (tests).
    """
    from pgserver.postgres_server import get_server  # imported here: a configured database never needs it

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded.get(data_dir)
    if server is None:
        _forget_dead_users(data_dir)
        server = _embedded[data_dir] = get_server(data_dir, cleanup_mode="delete" if delete_on_exit else "stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


def _forget_dead_users(data_dir: Path) -> None:
    """Drop processes that died without saying goodbye (SIGKILL) from pgserver's list of users of the server.

    pgserver stops the server when the last process on that list exits; a dead entry would keep it running
    forever after the real last user has gone.
    """
    import json

    import psutil
    from pgserver.postgres_server import PostgresServer

    handles = data_dir / ".handle_pids.json"
    with PostgresServer._lock:  # the lock pgserver itself takes around that list
        if not handles.exists():
            return
        alive = [pid for pid in json.loads(handles.read_text() or "[]") if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))


def embedded_users(settings: Settings) -> list[int]:
    """Other live processes using the embedded database of this data folder (servers, workers, commands)."""
    import json

    import psutil

    handles = (settings.data_path / "postgres").expanduser().resolve() / ".handle_pids.json"
    if not handles.exists():
        return []
    pids = json.loads(handles.read_text() or "[]")
    return [pid for pid in pids if pid != os.getpid() and psutil.pid_exists(pid)]


def resolve_database_url(settings: Settings) -> str:
    """The URL to connect to: the configured one, else the embedded server's (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded_server_url(settings.data_path / "postgres")


KEY_FILE_NAME = "secret_key"
MISSING_KEY = (
    f"{ENV_PREFIX}SECRET_KEY is not set: with {ENV_PREFIX}DATABASE_URL configured, Agora needs the data key that "
    f"seals secrets at rest ({HOW_TO_MAKE_ONE}, and give every process the same value)"
)


def key_file(settings: Settings) -> Path:
    return settings.data_path / KEY_FILE_NAME


def uses_key_file(settings: Settings) -> bool:
    """True when the data key lives in the data folder: the embedded database, and no AGORA_SECRET_KEY."""
    return not settings.secret_key and not settings.database_url


def resolve_secret_key(settings: Settings) -> str:
    """The key ring's text: AGORA_SECRET_KEY, else (embedded database only) the data folder's key file, created
    with a new random key on first use. A configured database without AGORA_SECRET_KEY is refused: a key made up
    here would differ from the other processes' and from the next start's."""
    if settings.secret_key:
        return settings.secret_key
    if settings.database_url:
        raise SettingsError(MISSING_KEY)
    path = key_file(settings)
    if not path.exists():
        _create_key_file(path, new_key_entry() + "\n")
    return read_key_file(path)


def load_keyring(settings: Settings) -> KeyRing:
    """The data key ring from AGORA_SECRET_KEY or the key file; a SettingsError names what is wrong."""
    source = f"{ENV_PREFIX}SECRET_KEY" if settings.secret_key else str(key_file(settings))
    try:
        keyring = KeyRing.parse(resolve_secret_key(settings), source=source)
    except KeyRingError as error:
        raise SettingsError(str(error)) from None
    if keyring.empty:
        raise SettingsError(f"{source} holds no key ({HOW_TO_MAKE_ONE})")
    return keyring


def read_key_file(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        raise SettingsError(f"{path} is readable by other users: chmod 600 {path}")
    return path.read_text()


def write_key_file(path: Path, text: str) -> None:
    """Replace the key file atomically (a crash leaves the old ring or the new one, never half of either)."""
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    _write_private(staged, text)
    os.replace(staged, path)


def _create_key_file(path: Path, text: str) -> None:
    # Written aside, then linked into place: two processes starting together agree on whichever link won.
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    _write_private(staged, text)
    try:
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        staged.unlink()


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL on the psycopg 3 driver (Alembic's input)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+psycopg"))
