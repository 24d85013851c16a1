"""The `agora` command (`app.cli.commands`), with `agora secrets` in `app.cli.data_keys`."""

from app.cli.commands import main

__all__ = ["main"]
