"""What readiness needs to know of the database."""

from __future__ import annotations

from app.repo.connections import Connection, one_row


async def schema_revision(connection: Connection) -> str | None:
    """The migration the database is at; None when it has never been migrated."""
    cursor = await connection.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
    (migrated,) = await one_row(cursor)
    if not migrated:
        return None
    cursor = await connection.execute("SELECT version_num FROM alembic_version")
    row = await cursor.fetchone()
    return row[0] if row else None
