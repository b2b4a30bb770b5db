"""Concurrent writes gathered into batches (appliance.coalesce), alone and in the Store."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from appliance.errors import StoreError
from appliance.store import Store
from appliance.store.coalesce import Coalescer
from tests.test_store import job

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # a round trip: others arrive meanwhile
        if self.fail_on in items:
            raise ValueError(f"refused {self.fail_on}")
        return [item * 10 for item in items]


async def test_items_arriving_during_a_send_go_together_in_the_next() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, limit=50)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0.002)  # its send is under way (it takes 10 ms)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(1, 30)))
    assert await first == 0
    assert results == [i * 10 for i in range(1, 30)]  # each caller gets its own answer
    assert recorder.batches == [[0], list(range(1, 30))]
    assert await coalescer.submit(99) == 990  # idle again: no wait for a batch to fill
    assert recorder.batches[-1] == [99]


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.send, limit=8)
    await asyncio.gather(*(coalescer.submit(i) for i in range(21)))
    assert [len(batch) for batch in recorder.batches] == [8, 8, 5]
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(21))


async def test_a_failed_batch_fails_only_its_own_callers() -> None:
    recorder = Recorder(fail_on=5)
    coalescer = Coalescer(recorder.send, limit=4)
    outcomes = await asyncio.gather(
        *(coalescer.submit(i) for i in range(10)), return_exceptions=True
    )
    failed = {i for i, outcome in enumerate(outcomes) if isinstance(outcome, ValueError)}
    assert failed == set(next(batch for batch in recorder.batches if 5 in batch))
    assert all(outcomes[i] == i * 10 for i in range(10) if i not in failed)
    assert await coalescer.submit(7) == 70  # and it goes on working


async def test_concurrent_job_inserts_share_commands_and_keep_duplicates_apart(
    store: Store,
) -> None:
    first = job()
    await store.insert_job(first)
    records = [job() for _ in range(40)]
    records.insert(20, {**job(), "_id": first["_id"]})  # the same id again, mid-batch
    outcomes = await asyncio.gather(*(store.insert_job(r) for r in records), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], StoreError)
    assert "exists already" in str(errors[0])
    assert isinstance(outcomes[20], StoreError)
    for record in records[:20] + records[21:]:
        assert await store.get_job(str(record["_id"])) is not None
    assert await store.jobs.count_documents({}) == 41


async def test_concurrent_cancel_questions_share_reads_and_each_gets_its_own_answer(
    store: Store,
) -> None:
    ids = [str(job()["_id"]) for _ in range(30)]
    for job_id in ids[::3]:
        await store.request_cancel(job_id)
    reads: list[int] = []
    send = store._cancel_reads.send

    async def counted(asked: list[list[str]]) -> list[set[str]]:
        reads.append(len(asked))
        return await send(asked)

    store._cancel_reads.send = counted
    answers = await asyncio.gather(*(store.cancel_requested([a, b])
                                     for a, b in itertools.pairwise(ids)))  # fmt: skip
    for (a, b), answer in zip(itertools.pairwise(ids), answers, strict=True):
        assert answer == {i for i in (a, b) if ids.index(i) % 3 == 0}
    assert sum(reads) == len(ids) - 1 and len(reads) <= 3  # 29 questions, a few reads
    assert await store.cancel_requested([ids[1]]) == set()
