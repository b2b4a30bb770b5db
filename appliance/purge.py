"""``appliance purge``: the operator deletes finished jobs by age, service and state,
their records and their directories in step, the way retention does (appliance.scheduler.
retention): matching jobs that no unfinished job reads are marked, the grace of a lease
passes (a job submitted meanwhile that reads one is then active, and keeps it), and the
marked ones go, record first. Without ``--yes`` it only says what would go.

Run it where the database and the jobs volume are: in the bundle,
``docker compose -p appliance exec scheduler appliance purge ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from appliance.errors import ConfigError
from appliance.jobdirs import directory_size
from appliance.scheduler import retention
from appliance.settings import Settings
from appliance.states import FINAL
from appliance.store import Store
from appliance.units import format_size


@dataclass(frozen=True)
class Choice:
    older_than: float  # seconds since the job ended
    services: list[str] | None = None
    states: list[str] | None = None


async def purge(
    settings: Settings, choice: Choice, *, really: bool, grace: float | None = None,
    say: Callable[[str], None] = print,
) -> int:  # fmt: skip
    """Say what goes, and with ``really`` delete it; returns the number deleted (or,
    without ``really``, that would be)."""
    store = Store(settings.mongodb_uri, settings.mongodb_database, retry_seconds=0,
                  timeout_ms=int(settings.database_timeout * 1000))  # fmt: skip
    try:
        now = await store.now()
        before = now - timedelta(seconds=choice.older_than)
        reads = await _reading(store)
        matching = await store.expired_jobs(before, services=choice.services,
                                            states=choice.states)  # fmt: skip
        found = [job for job in matching if job["_id"] not in reads]
        kept = len(matching) - len(found)
        size = sum(await asyncio.to_thread(
            lambda: [directory_size(settings.jobs_dir / str(job["_id"]), 2**62) for job in found]))  # fmt: skip
        counts = Counter((str(job.get("service")), str(job.get("state"))) for job in found)
        verb = "deleting" if really else "would delete"
        say(f"{verb} {len(found)} finished jobs ended before {before:%Y-%m-%d %H:%M} UTC, "
            f"{format_size(size)} of files")  # fmt: skip
        for (service, state), count in sorted(counts.items()):
            say(f"  {service:24} {state:12} {count}")
        if kept:
            say(f"keeping {kept} that unfinished jobs read")
        if not really or not found:
            if not really:
                say("nothing deleted: run again with --yes to delete them")
            return len(found)
        wait = max(grace if grace is not None else retention.grace_of(settings),
                   settings.lease_seconds)  # fmt: skip
        marked = await retention.mark(store, "jobs", before, reads, now,
                                      services=choice.services, states=choice.states)  # fmt: skip
        say(f"marked {marked}; waiting {wait:g} s so that no job submitted meanwhile loses "
            "what it reads")  # fmt: skip
        await asyncio.sleep(wait)
        started = time.monotonic()
        deleted = await retention.delete_marked(
            store,
            "jobs",
            await store.now(),
            await _reading(store),
            lambda job_id: retention.delete_job(store, settings, job_id),
        )
        say(f"deleted {deleted} jobs and their files in {time.monotonic() - started:.1f} s")
        return deleted
    finally:
        await store.close()


async def _reading(store: Store) -> set[str]:
    return retention.jobs_read(await store.references()) | await store.copies.sources()


def _run(args: argparse.Namespace) -> int:
    from appliance.settings import load_settings
    from appliance.units import parse_duration

    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    unknown = [s for s in args.state or () if s not in {str(f) for f in FINAL}]
    if unknown:
        raise ConfigError(f"--state: {', '.join(unknown)} is not a final state (one of "
                          f"{', '.join(sorted(str(f) for f in FINAL))}): only ended jobs "
                          "are purged")  # fmt: skip
    choice = Choice(older_than, args.service or None, args.state or None)
    asyncio.run(purge(load_settings(), choice, really=args.yes, grace=args.grace))
    return 0


def add_command(sub: Any) -> None:
    parser = sub.add_parser(
        "purge", help="delete finished jobs (records and files) by age, service and state; "
        "says what would go unless --yes",
    )  # fmt: skip
    parser.add_argument("--older-than", required=True, metavar="AGE", help="jobs that ended "
                        "longer ago than this (30d, 12h; 0 for every finished job)")  # fmt: skip
    parser.add_argument("--service", action="append", metavar="ID",
                        help="only this service's jobs (repeat for more)")  # fmt: skip
    parser.add_argument("--state", action="append", metavar="STATE",
                        help="only jobs in this final state, e.g. FAILED (repeat for more)")  # fmt: skip
    parser.add_argument("--yes", action="store_true", help="delete them (else only say)")
    parser.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                        help="how long marked jobs wait before they go (default: a lease, "
                        "at least 60 s; never less than lease_seconds)")  # fmt: skip
    parser.set_defaults(handler=_run)
