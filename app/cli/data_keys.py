"""`agora secrets`: the data key ring that seals secrets at rest (new keys, what each key seals, rotation)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from app.cli.common import database, keyring_of, with_uow
from app.config import Settings
from app.crypto import SealError, new_key_entry
from app.repo import migrate
from app.services import sealing


def cmd_secrets_new_key(settings: Settings, args: argparse.Namespace) -> None:
    print(new_key_entry())


def cmd_secrets_status(settings: Settings, args: argparse.Namespace) -> None:
    keyring = keyring_of(settings)
    url = database(settings)
    migrate.upgrade(url)
    census = asyncio.run(with_uow(url, lambda uow: sealing.census(uow.lease)))
    used = {key for counts in census.values() for key in counts}
    unused = [key_id for key_id in keyring.key_ids[1:] if key_id not in used]
    print(json.dumps({"sealing_key": keyring.primary_id, "values": census, "unused_keys": unused}, indent=2))


def cmd_secrets_rotate(settings: Settings, args: argparse.Namespace) -> None:
    """Re-seal everything under the ring's first key. With the data folder's key file: a new key first, then the
    re-seal, then the old keys dropped. With AGORA_SECRET_KEY: the operator put the new key first; we re-seal and
    name the old keys that nothing uses any more."""
    from app.repo.database import embedded_users, key_file, uses_key_file, write_key_file

    keyring = keyring_of(settings)
    url = database(settings)
    migrate.upgrade(url)
    in_file = uses_key_file(settings)
    if in_file:
        if users := embedded_users(settings):
            raise SystemExit(
                f"agora: stop the processes using this data folder first (pids {users}): a running server keeps "
                "the old key ring in memory, so it would seal new values under the old key and not open the new ones"
            )
        keyring = keyring.with_new_key()
        write_key_file(key_file(settings), keyring.to_text(separator="\n") + "\n")
    try:
        report = asyncio.run(with_uow(url, lambda uow: sealing.reseal_all(uow.lease, keyring)))
    except SealError as error:  # e.g. a value under a key already removed from AGORA_SECRET_KEY
        raise SystemExit(f"agora: {error}") from None
    used = report.key_ids_in_use()
    old = list(keyring.key_ids[1:])
    summary = {"sealing_key": keyring.primary_id, "resealed": report.resealed, "values": report.census}
    if used - {keyring.primary_id}:  # written meanwhile by a process that still seals with an old key
        print(json.dumps({**summary, "old_keys_still_used": sorted(used - {keyring.primary_id})}, indent=2))
        raise SystemExit("agora: some values are still sealed under old keys; restart every process, then run again")
    if in_file:
        write_key_file(key_file(settings), keyring.only_primary().to_text() + "\n")
        print(json.dumps({**summary, "dropped_keys": old}, indent=2))
    else:
        print(json.dumps({**summary, "unused_keys": old}, indent=2))
        if old:
            print(f"Nothing is sealed under {', '.join(old)} now: remove them from AGORA_SECRET_KEY.", file=sys.stderr)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("secrets", help="the data key that seals secrets at rest").add_subparsers(
        dest="secrets_command", required=True
    )
    keys.add_parser("new-key", help="print a new random data key entry for AGORA_SECRET_KEY").set_defaults(
        run=cmd_secrets_new_key
    )
    keys.add_parser("status", help="how many stored values each key seals").set_defaults(run=cmd_secrets_status)
    keys.add_parser(
        "rotate", help="re-seal every stored secret under the first key (the data folder's: a new key), drop the old"
    ).set_defaults(run=cmd_secrets_rotate)
