"""The database's part of a backup (``appliance dump-database``, ``load-database``:
appliance.backup): every record as gzipped JSON lines (MongoDB extended JSON: dates, ids
and binaries come back as they were), and back into an empty (or emptied) database.
``scripts/backup`` and ``scripts/restore`` add the two volumes around it.

A dump is taken while the appliance runs. It is not one point in time, so it is read in
the order that keeps references whole: jobs first, then the uploads they name (an upload
is recorded before any job that reads it), then the rest; the volumes are copied after
the dump, so every file a dumped record names is in the copy. Records written later are
simply not in it. Who holds which job is not kept (``schedulers``): on the restored
machine the leases expire and that machine's schedulers take the jobs over, ending
honestly those whose runs were on the old machine.

A line is ``{"c": collection, "d": document}``; the first line is the header
``{"appliance": version, "format": stored format, "made_at": ...}``.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from bson import json_util

from appliance import __version__
from appliance.errors import ConfigError
from appliance.store.connection import Connection
from appliance.store.formats import FORMAT

FIRST = ("jobs", "files")  # in this order, then every other collection
LEFT_OUT = frozenset({"schedulers"})  # who was running where: not true elsewhere
BATCH = 1000
OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, tz_aware=True,
                                tzinfo=None)  # fmt: skip


async def _collections(store: Connection) -> list[str]:
    names = await store._call("list collections", store.db.list_collection_names)
    rest = sorted(n for n in names if n not in FIRST and n not in LEFT_OUT)
    return [n for n in FIRST if n in names] + rest


async def dump(store: Connection, out: IO[bytes], say: Callable[[str], None]) -> Counter[str]:
    """Every record, as gzipped JSON lines, to ``out``; the counts per collection."""
    counts: Counter[str] = Counter()
    stored = await store.meta.find_one({"_id": "format"})
    header = {"appliance": __version__, "format": int((stored or {}).get("version", 1)),
              "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as packed:
        packed.write(json.dumps(header).encode() + b"\n")
        for name in await _collections(store):
            cursor = store.db[name].find({}).batch_size(BATCH)
            async for doc in cursor:
                line = json_util.dumps({"c": name, "d": doc}, json_options=OPTIONS)
                packed.write(line.encode() + b"\n")
                counts[name] += 1
            say(f"{name}: {counts[name]} records")
    return counts


async def load(store: Connection, source: IO[bytes], *, replace: bool,
               say: Callable[[str], None]) -> Counter[str]:  # fmt: skip
    """Records from a dump into the database: refused if it holds jobs, unless
    ``replace`` (then every collection the dump has is emptied first)."""
    with gzip.GzipFile(fileobj=source, mode="rb") as packed:
        header = json.loads(packed.readline() or b"{}")
        if "format" not in header:
            raise ConfigError("this is not a dump of appliance dump-database (no header)")
        if int(header["format"]) > FORMAT:
            raise ConfigError(f"the dump is of format {header['format']} (appliance "
                              f"{header.get('appliance')}); this appliance ({__version__}) "
                              f"reads format {FORMAT} and older: restore with a newer one")  # fmt: skip
        existing = await store._call("count jobs", lambda: store.jobs.count_documents({}))
        if existing and not replace:
            raise ConfigError(f"database {store.db.name} already holds {existing} jobs: load "
                              "into an empty one, or give --replace to delete them first")  # fmt: skip
        counts: Counter[str] = Counter()
        emptied: set[str] = set()
        batch: list[dict[str, Any]] = []
        current = ""

        async def flush() -> None:
            if batch:
                await store.db[current].insert_many(batch, ordered=False)
                counts[current] += len(batch)
                batch.clear()

        for raw in packed:
            line = json_util.loads(raw, json_options=OPTIONS)
            name, doc = str(line["c"]), line["d"]
            if name != current:
                await flush()
                if current:
                    say(f"{current}: {counts[current]} records")
                current = name
            if name not in emptied:
                if replace:
                    await store.db[name].delete_many({})
                emptied.add(name)
            batch.append(doc)
            if len(batch) >= BATCH:
                await flush()
        await flush()
        if current:
            say(f"{current}: {counts[current]} records")
    say(f"loaded a dump of appliance {header.get('appliance')} made at {header.get('made_at')} "
        f"(format {header['format']}; the scheduler migrates older formats at its start)")  # fmt: skip
    return counts
