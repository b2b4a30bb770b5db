"""``appliance dump-database`` and ``appliance load-database``: the database's part of
``scripts/backup`` and ``scripts/restore`` (the records' format: appliance.store.dumps).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from appliance.store import Store
from appliance.store.dumps import dump, load


def _store(settings: Any) -> Store:
    return Store(settings.mongodb_uri, settings.mongodb_database, retry_seconds=0,
                 timeout_ms=int(settings.database_timeout * 1000))  # fmt: skip


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _dump(args: argparse.Namespace) -> int:
    from appliance.settings import load_settings

    async def run() -> None:
        store = _store(load_settings())
        try:
            if args.output == "-":
                await dump(store, sys.stdout.buffer, _err)
            else:
                with open(args.output, "wb") as out:
                    await dump(store, out, _err)
        finally:
            await store.close()

    asyncio.run(run())
    return 0


def _load(args: argparse.Namespace) -> int:
    from appliance.settings import load_settings

    async def run() -> None:
        store = _store(load_settings())
        try:
            if args.input == "-":
                await load(store, sys.stdin.buffer, replace=args.replace, say=_err)
            else:
                with open(args.input, "rb") as source:
                    await load(store, source, replace=args.replace, say=_err)
        finally:
            await store.close()

    asyncio.run(run())
    return 0


def add_commands(sub: Any) -> None:
    dumping = sub.add_parser("dump-database", help="write every record as gzipped JSON lines "
                             "(the database's part of scripts/backup)")  # fmt: skip
    dumping.add_argument("output", help="a file, or - for standard output")
    dumping.set_defaults(handler=_dump)
    loading = sub.add_parser("load-database", help="load a dump-database file into an empty "
                             "database (the database's part of scripts/restore)")  # fmt: skip
    loading.add_argument("input", help="a file, or - for standard input")
    loading.add_argument("--replace", action="store_true",
                         help="empty the dump's collections first, if the database has jobs")  # fmt: skip
    loading.set_defaults(handler=_load)
