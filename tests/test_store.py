from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import timedelta
from typing import Any

import pytest

from appliance.errors import StoreUnavailableError
from appliance.jobrecord import JobRecord
from appliance.states import JobState
from appliance.store import Store, new_id, utcnow

pytestmark = pytest.mark.anyio
RUNNERS = ["docker"]


def job(state: str = "ACCEPTED", service: str = "svc", age: float = 0.0,
        runner: str | None = "docker") -> JobRecord:  # fmt: skip
    return {"_id": new_id(), "service": service, "state": state,
            "submitted_at": utcnow() - timedelta(seconds=age), "runner": runner}  # fmt: skip


async def test_indexes_exist_for_every_query_where_the_server_uses_them(store: Store) -> None:
    await store.jobs.create_index([("submitted_at", -1)], name="newest")  # made by earlier code
    await store.ensure_indexes()  # idempotent, and drops what it replaced (the collections
    # of 0.1.0 go with the migration of its records: tests/test_store_formats.py)
    names = {index["name"] async for index in await store.jobs.list_indexes()}
    lists = {"list_service_state", "list_service", "list_state", "list_all", "tasks"}
    info = await store.client.admin.command("buildInfo")
    assert await store.secondary_indexes_help()
    assert "newest" not in names
    claims = {"claimable", "by_client"}
    if "ferretdbVersion" in info:  # the pushdown build: only indexes it serves queries from
        assert names - {"_id_"} == lists | claims
    else:
        assert lists | claims | {"expiry"} <= names


async def test_insert_get_and_tz_aware_times(store: Store) -> None:
    record = job()
    await store.insert_job(record)
    found = await store.get_job(str(record["_id"]))
    assert found is not None
    assert found["service"] == "svc"
    assert found["lease_owner"] is None and found["lease_gen"] == 0
    assert found["submitted_at"].tzinfo is not None
    assert await store.get_job(new_id()) is None


async def test_find_jobs_filters_newest_first_and_pages(store: Store) -> None:
    for i in range(5):
        await store.insert_job(job("COMPLETED", "a", age=100 - i))
    for i in range(3):
        await store.insert_job(job("FAILED", "b", age=50 - i))
    total, jobs = await store.find_jobs()
    assert total == 8
    times = [j["submitted_at"] for j in jobs]
    assert times == sorted(times, reverse=True)
    total, none = await store.find_jobs(limit=0)
    assert total == 8 and none == []  # a limit of 0 counts, and lists nothing
    total, jobs = await store.find_jobs(services=["a"], skip=1, limit=2)
    assert total == 5 and len(jobs) == 2
    total, _ = await store.find_jobs(states=["FAILED", "COMPLETED"], services=["b"])
    assert total == 3
    cutoff = utcnow() - timedelta(seconds=75)
    total, _ = await store.find_jobs(submitted_after=cutoff)
    assert total == 3
    total, _ = await store.find_jobs(submitted_before=cutoff)
    assert total == 5
    ids = [str(j["_id"]) for j in jobs]
    total, found = await store.find_jobs(ids=ids[:1])
    assert total == 1 and found[0]["_id"] == ids[0]


async def test_claim_takes_oldest_and_respects_leases(store: Store) -> None:
    old, new = job(age=10), job(age=1)
    await store.insert_job(new)
    await store.insert_job(old)
    await store.insert_job(job("COMPLETED", age=20))
    first = await store.claims.claim("A", [JobState.ACCEPTED], 30, runners=RUNNERS)
    assert first is not None and first["_id"] == old["_id"] and first["lease_owner"] == "A"
    second = await store.claims.claim("B", [JobState.ACCEPTED], 30, runners=RUNNERS)
    assert second is not None and second["_id"] == new["_id"]
    assert await store.claims.claim("C", [JobState.ACCEPTED], 30, runners=RUNNERS) is None


async def test_expired_lease_is_taken_over(store: Store) -> None:
    record = job()
    await store.insert_job(record)
    assert await store.claims.claim("dead", [JobState.ACCEPTED], 0.2, runners=RUNNERS) is not None
    assert await store.claims.claim("alive", [JobState.ACCEPTED], 30, runners=RUNNERS) is None
    await asyncio.sleep(0.3)
    taken = await store.claims.claim("alive", [JobState.ACCEPTED], 30, runners=RUNNERS)
    assert taken is not None and taken["lease_owner"] == "alive" and taken["claims"] == 2
    # The dead owner can no longer renew or move it.
    assert await store.claims.renew("dead", [str(record["_id"])], 30) == set()
    assert await store.move_job(str(record["_id"]), [JobState.ACCEPTED], JobState.QUEUED,
                                owner="dead") is False  # fmt: skip
    assert await store.claims.renew("alive", [str(record["_id"])], 30) == {record["_id"]}


async def test_move_job_is_compare_and_set(store: Store) -> None:
    record = job()
    await store.insert_job(record)
    jid = str(record["_id"])
    assert await store.move_job(jid, [JobState.ACCEPTED], JobState.QUEUED, {"runner": "docker"})
    assert not await store.move_job(jid, [JobState.ACCEPTED], JobState.RUNNING)
    found = await store.get_job(jid)
    assert found is not None and found["state"] == "QUEUED" and found["runner"] == "docker"


async def test_cancel_request_and_release(store: Store) -> None:
    record = job()
    await store.insert_job(record)
    jid = str(record["_id"])
    assert await store.claims.claim("A", [JobState.ACCEPTED], 30, runners=RUNNERS) is not None
    await store.claims.release("A", jid)
    after = await store.get_job(jid)
    assert after is not None and after["lease_owner"] is None and after["lease_gen"] == 1
    other = new_id()
    assert await store.cancel_requested([jid, other]) == set()
    assert await store.request_cancel(jid)  # nobody holds it: it ends here and now
    ended = await store.get_job(jid)
    assert ended is not None and ended["state"] == "INTERRUPTED"
    assert ended["error"] == "cancelled before it started"
    held = job()
    await store.insert_job(held)
    hid = str(held["_id"])
    assert await store.claims.claim("A", [JobState.ACCEPTED], 30, runners=RUNNERS) is not None
    assert not await store.request_cancel(hid)  # held: the holder is asked to stop it
    assert not await store.request_cancel(hid)  # idempotent
    assert await store.cancel_requested([hid, jid, other]) == {hid}
    assert (await store.get_job(hid) or {})["state"] == "ACCEPTED"


async def test_files_and_service_status(store: Store) -> None:
    fid = new_id()
    await store.insert_file({"_id": fid, "label": "a.fa", "created_at": utcnow()})
    updated = await store.update_file(fid, {"label": "b.fa"})
    assert updated is not None and updated["label"] == "b.fa"
    assert await store.get_file(new_id()) is None
    await store.set_service_status("clustalo", "OK")
    await store.set_service_status("clustalo", "DOWN", "image missing")
    statuses = await store.service_statuses()
    assert statuses["clustalo"]["status"] == "DOWN"
    assert statuses["clustalo"]["message"] == "image missing"


def _claimer(
    uri: str, database: str, owner: str, start: float, out: multiprocessing.Queue[list[str]]
) -> None:
    async def run() -> list[str]:
        store = Store(uri, database)
        taken = []
        while time.time() < start:
            await asyncio.sleep(0.001)
        while (
            doc := await store.claims.claim(owner, [JobState.ACCEPTED], 60, runners=RUNNERS)
        ) is not None:
            taken.append(str(doc["_id"]))
        await store.close()
        return taken

    out.put(asyncio.run(run()))


async def test_concurrent_processes_never_take_the_same_job(
    store: Store, mongodb_uri: str, database_name: str
) -> None:
    ids = set()
    for _ in range(120):
        record = job()
        ids.add(str(record["_id"]))
        await store.insert_job(record)
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = context.Queue()
    start = time.time() + 2.0
    procs = [context.Process(target=_claimer, args=(mongodb_uri, database_name, f"p{i}", start, out))
             for i in range(4)]  # fmt: skip
    for proc in procs:
        proc.start()
    results = [await asyncio.to_thread(out.get, True, 60) for _ in procs]
    for proc in procs:
        proc.join(10)
    taken = [jid for result in results for jid in result]
    assert sum(1 for result in results if result) >= 2, "the processes did not contend"
    assert len(taken) == len(set(taken)), "a job was claimed twice"
    assert set(taken) == ids
    total, _ = await store.find_jobs(states=["ACCEPTED"])
    docs = [await store.get_job(jid) for jid in ids]
    assert all(d is not None and d["claims"] == 1 for d in docs)
    assert total == 120


async def test_unreachable_server_gives_store_unavailable_after_retrying() -> None:
    store = Store(
        "mongodb://127.0.0.1:9/", "x", retry_seconds=0.5, server_timeout_ms=100, timeout_ms=500
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        await store.get_job("x")
    assert time.monotonic() - started >= 0.4  # it retried before giving up
    await store.close()


async def test_a_claim_never_returns_a_job_in_another_state(store: Store) -> None:
    record = job("QUEUED")
    await store.insert_job(record)
    assert await store.claims.claim("A", [JobState.ACCEPTED], 30, runners=RUNNERS) is None
    found = await store.get_job(str(record["_id"]))
    assert found is not None and found["lease_owner"] is None


async def test_a_new_job_is_claimable_by_its_own_write_alone(store: Store) -> None:
    """No wake-up, entry or second write: the insert is what a claim finds."""
    record = job()
    await store.insert_job(record)
    claimed = await store.claims.claim("a", [JobState.ACCEPTED], 30, runners=RUNNERS)
    assert claimed is not None and claimed["_id"] == record["_id"]
    assert claimed["lease_owner"] == "a" and claimed["lease_gen"] == 1 and claimed["claims"] == 1
    assert {"active", "leases"}.isdisjoint(await store.db.list_collection_names())


async def test_a_batch_is_claimed_oldest_first_with_one_search_per_batch_of_entries(
    store: Store,
) -> None:
    records = [job(age=100 - i) for i in range(20)]  # records[0] is the oldest
    for record in records:
        await store.insert_job(record)
    searches: list[str] = []
    call = store._call

    async def counted(what: str, operation: Any, **options: Any) -> Any:
        if what == "find claimable jobs":
            searches.append(what)
        return await call(what, operation, **options)

    store._call = counted  # type: ignore[method-assign]

    async def started(owner: str, job: JobRecord | None) -> JobRecord | None:
        """What a scheduler does with a claimed job: it leaves ACCEPTED."""
        if job is not None:
            assert await store.move_job(str(job["_id"]), [JobState.ACCEPTED], JobState.QUEUED,
                                        owner=owner)  # fmt: skip
        return job

    first = await started("a", await store.claims.claim("a", [JobState.ACCEPTED], 30,
                                                        runners=RUNNERS))  # fmt: skip
    assert first is not None and first["_id"] == records[0]["_id"]
    # Another process takes the third oldest while "a" still has it among its candidates.
    assert await started("b", await store.claims.claim_by_id("b", str(records[2]["_id"]),
                                                             [JobState.ACCEPTED], 30))  # fmt: skip
    claimed = [first["_id"]]
    while (
        taken := await started(
            "a", await store.claims.claim("a", [JobState.ACCEPTED], 30, runners=RUNNERS)
        )
    ) is not None:
        claimed.append(taken["_id"])
    assert claimed == [r["_id"] for r in records if r is not records[2]]  # each once, in order
    # 19 claims and the last look: 3 searches (16 jobs, the 4 left, none), not 20.
    assert len(searches) == 3


async def test_renewal_counts_only_leases_still_held(store: Store) -> None:
    records = [job(age=3 - i) for i in range(3)]
    for record in records:
        await store.insert_job(record)
    ids = []
    for _ in records:
        claimed = await store.claims.claim("a", [JobState.ACCEPTED], 30, runners=RUNNERS)
        assert claimed is not None
        ids.append(str(claimed["_id"]))
    await store.claims.release("a", ids[0])
    assert await store.claims.renew("a", ids, 60) == set(ids[1:])
    found = {j["_id"]: j async for j in store.jobs.find({})}
    assert found[ids[0]]["lease_expires"] is None
    assert found[ids[1]]["lease_expires"] > utcnow() + timedelta(seconds=45)


async def test_renewing_hundreds_of_leases_at_once_does_not_hang_the_server(store: Store) -> None:
    # FerretDB holds a connection per update of a bulk command until the command ends;
    # one command of 250 updates used to wait for ever (a scheduler holding 200 jobs).
    records: list[JobRecord] = [{**job(), "lease_owner": "a", "lease_expires": utcnow()}
                                for _ in range(250)]  # fmt: skip
    for record in records:
        await store.insert_job(record)
    ids = [str(r["_id"]) for r in records]
    assert await asyncio.wait_for(store.claims.renew("a", ids, 60), 60) == set(ids)
    expires = [j["lease_expires"] async for j in store.jobs.find({"_id": {"$in": ids}})]
    assert len(expires) == 250 and min(expires) > utcnow() + timedelta(seconds=45)
    assert await asyncio.wait_for(store.get_job(ids[0]), 10) is not None  # still answering


async def test_the_database_server_survives_a_bulk_of_hundreds_of_updates(store: Store) -> None:
    # Any client may send one (the previous system does): FerretDB 1.24 hung on it for
    # good until tools/ferretdb-server/patches/update-close-each.sed.
    from pymongo import UpdateOne

    await store.jobs.insert_many([{"_id": f"bulk{i}", "n": 0} for i in range(150)])
    updates = [UpdateOne({"_id": f"bulk{i}"}, {"$set": {"n": 1}}) for i in range(150)]
    result = await asyncio.wait_for(store.jobs.bulk_write(updates, ordered=False), 60)
    assert result.modified_count == 150
    assert await asyncio.wait_for(store.jobs.count_documents({"n": 1}), 10) == 150


async def test_claims_take_only_the_runners_asked_for(store: Store) -> None:
    mine, theirs, old = job(runner="docker", age=3), job(runner="slurm", age=2), job(runner=None)
    for record in (mine, theirs, old):
        await store.insert_job(record)
    for _ in range(40):  # many older jobs of another runner must not hide ours
        await store.insert_job(job(runner="k8s", age=100))
    taken = []
    while claimed := await store.claims.claim("a", [JobState.ACCEPTED], 30, runners=["docker"]):
        taken.append(claimed["_id"])
    assert taken == [mine["_id"]]  # a job stored without a runner is housekeeping's
    claimed = await store.claims.claim("b", [JobState.ACCEPTED], 30, runners=["slurm"])
    assert claimed is not None and claimed["_id"] == theirs["_id"]


async def test_leases_are_timed_by_the_servers_clock(store: Store, mongodb_uri: str,
                                                     database_name: str) -> None:  # fmt: skip
    """A scheduler on a machine whose clock is an hour fast must not think every lease
    has run out (nor one an hour slow that its own never do)."""
    fast = Store(mongodb_uri, database_name, clock=lambda: utcnow() + timedelta(hours=1))
    slow = Store(mongodb_uri, database_name, clock=lambda: utcnow() - timedelta(hours=1))
    try:
        record = job()
        await store.insert_job(record)
        claimed = await slow.claims.claim("slow", [JobState.ACCEPTED], 30, runners=RUNNERS)
        assert claimed is not None and claimed["lease_expires"] is not None
        assert abs((claimed["lease_expires"] - utcnow()).total_seconds() - 30) < 5
        assert await fast.claims.claim("fast", [JobState.ACCEPTED], 30, runners=RUNNERS) is None
        assert abs((await fast.now() - utcnow()).total_seconds()) < 5
    finally:
        await fast.close()
        await slow.close()


async def test_the_presence_of_schedulers(store: Store) -> None:
    await store.claims.announce("s1", ["docker"])
    await store.claims.announce("s2", ["slurm", "local"])
    assert await store.claims.live_runners(60) == {"docker", "slurm", "local"}
    await store.claims.withdraw("s2")
    assert await store.claims.live_runners(60) == {"docker"}
    await store.schedulers.update_one({"_id": "s1"},
                                      {"$set": {"seen_at": utcnow() - timedelta(hours=1)}})  # fmt: skip
    assert await store.claims.live_runners(60) == set()


async def test_a_slow_claimant_cannot_overwrite_a_later_claim(store: Store) -> None:
    """A claimant that read the job (generation 0) and then stalled for longer than a
    lease finds, when it wakes, a later claim's generation: its claim must not land,
    even though that later lease has run out meanwhile."""
    record = job()
    jid = str(record["_id"])
    await store.insert_job(record)
    snapshot = await store.get_job(jid)
    assert snapshot is not None
    taken = await store.claims.claim("fast", [JobState.ACCEPTED], 0.2, runners=RUNNERS)
    assert taken is not None and taken["lease_gen"] == 1
    await asyncio.sleep(0.3)  # the fast one's lease ran out too
    late = await store.claims._take(dict(snapshot), "slow", ["ACCEPTED"], await store.now(), 30)
    assert late is None
    final = await store.get_job(jid)
    assert final is not None and final["lease_owner"] == "fast" and final["lease_gen"] == 1


async def test_a_holder_that_renewed_is_not_robbed_by_a_claim_read_before(store: Store) -> None:
    """A claimant read the job while its lease had run out; the holder renewed before the
    claim landed. The claim's condition (lease still free or expired) refuses it."""
    record = job()
    jid = str(record["_id"])
    await store.insert_job(record)
    assert await store.claims.claim("holder", [JobState.ACCEPTED], 0.2, runners=RUNNERS)
    await asyncio.sleep(0.3)
    snapshot = await store.get_job(jid)  # expired, as the claimant sees it
    assert snapshot is not None
    assert await store.claims.renew("holder", [jid], 30) == {jid}
    assert await store.claims._take(dict(snapshot), "thief", ["ACCEPTED"], await store.now(),
                                    30) is None  # fmt: skip
    assert (await store.get_job(jid) or {})["lease_owner"] == "holder"


async def test_counters_made_by_two_clients_at_once_count_both(
    store: Store, mongodb_uri: str, database_name: str
) -> None:
    # Two web workers counting the first upload of a period (or the first submission of a
    # month) at once both upsert a new _id: FerretDB refuses one with a duplicate key
    # error, which once reached the client as a 500 (seen in a benchmark's batch).
    other = Store(mongodb_uri, database_name)
    try:
        for index in range(20):
            client, service = f"10.0.0.{index}", f"svc{index}"
            for one in (store, other):
                await one.add_upload_usage(client, 7, 100)
                await one.count_submission(service, "2026-11")
            await asyncio.gather(store.flush_counts(), other.flush_counts())  # at once
            assert await store.upload_usage(client, 7) == 200, client
            counted = {s["service"]: s["count"] for s in await store.usage_stats()}
            assert counted[service] == 2, service
            await asyncio.gather(store.set_service_status(service, "OK"),
                                 other.set_service_status(service, "OK"))  # fmt: skip
    finally:
        await other.close()


async def test_counts_are_sent_together_soon_and_at_the_stop(
    mongodb_uri: str, database_name: str
) -> None:
    one, reader = Store(mongodb_uri, database_name), Store(mongodb_uri, database_name)
    try:
        for _ in range(50):
            await one.count_submission("many", "2026-12")
        await one.add_upload_usage("10.1.1.1", 9, 5)
        deadline = time.monotonic() + 5
        while True:  # another process sees them within about half a second
            counted = {s["service"]: s["count"] for s in await reader.usage_stats()}
            if counted.get("many") == 50:
                break
            assert time.monotonic() < deadline, counted
            await asyncio.sleep(0.05)
        await one.count_submission("late", "2026-12")
        await one.close()  # a stop sends what is left
        counted = {s["service"]: s["count"] for s in await reader.usage_stats()}
        assert counted.get("late") == 1 and counted["many"] == 50
        assert await reader.upload_usage("10.1.1.1", 9) == 5
    finally:
        await reader.close()


async def test_a_due_count_is_read_once_for_everyone_asking_meanwhile(store: Store) -> None:
    for _ in range(3):
        await store.insert_job(job())
    reads: list[str] = []
    count = store.count

    async def counted(collection: Any, query: dict[str, Any]) -> int:
        reads.append(collection.name)
        await asyncio.sleep(0.02)  # a round trip: the others ask meanwhile
        return await count(collection, query)

    store.count = counted  # type: ignore[method-assign]
    waiting = ["ACCEPTED", "QUEUED"]
    answers = await asyncio.gather(
        *(store.count_unfinished(states=waiting, max_age=1.0) for _ in range(30))
    )
    assert answers == [3] * 30 and reads == ["jobs"]  # 30 asked, one read
    store.accepted_job("10.0.0.1", waiting)  # this process's own additions count at once
    assert await store.count_unfinished(states=waiting, max_age=1.0) == 4 and len(reads) == 1
    fresh = await asyncio.gather(*(store.count_unfinished(states=waiting) for _ in range(3)))
    assert fresh == [3] * 3 and len(reads) == 4  # max_age 0: a read of one's own each


async def test_a_new_upload_period_clears_the_old_ones_once(store: Store) -> None:
    await store.add_upload_usage("10.0.0.9", 1, 10)
    await store.flush_counts()
    deletes: list[object] = []
    delete_many = store.usage.delete_many

    async def counted(query: Any, *args: Any, **kwargs: Any) -> Any:
        deletes.append(query)
        return await delete_many(query, *args, **kwargs)

    store.usage.delete_many = counted  # type: ignore[method-assign,assignment]
    for _ in range(40):  # forty submissions within one send, in a new period
        await store.add_upload_usage("10.0.0.9", 2, 10)
    await store.flush_counts()
    assert deletes == [{"window": {"$lt": 2}}]  # once, not once per submission
    assert await store.upload_usage("10.0.0.9", 2) == 400
    assert await store.usage.find_one({"_id": "10.0.0.9|1"}) is None  # period 1 is gone
