"""Persistence: the schema (SQLAlchemy table metadata) and repositories. The only layer that writes SQL."""
