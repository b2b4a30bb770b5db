"""The database server answers filtered, sorted and counted queries as MongoDB would.

The FerretDB build of ``tools/ferretdb-server`` (the tests' server, and the bundle's)
hands string comparisons of top-level fields, one sort key and counts to SQLite
(``patches/pushdown.go``). Each query here is asked twice: as written, which that build
pushes down, and wrapped in ``$and``, which it never pushes down (FerretDB then filters,
sorts and counts every document itself). Both answers must agree, on tidy data (the
pushdown is taken: the plan names the index) and on data with arrays and mixed types in
the compared fields (the pushdown must step aside).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from appliance.store import Store, new_id
from appliance.store.indexes import JOB_INDEXES

Doc = dict[str, Any]
VALUES = ["x", "y", "z", "x y"]


@pytest.fixture
def db(mongodb_uri: str, database_name: str) -> Iterator[Database[Doc]]:
    client: MongoClient[Doc] = MongoClient(mongodb_uri, tz_aware=True)
    yield client[database_name]
    client.close()


def is_ferretdb(db: Database[Doc]) -> bool:
    return "ferretdbVersion" in db.client.admin.command("buildInfo")


def test_the_test_servers_build_pushes_down(db: Database[Doc]) -> None:
    info = db.client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        assert info.get("appliancePushdown") == 1, "not the build of tools/ferretdb-server"


def tidy(rng: random.Random, i: int) -> Doc:
    doc: Doc = {"_id": f"d{i:05d}", "t": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)}
    for field in ("a", "b", "k"):
        pick = rng.random()
        if pick < 0.8:
            doc[field] = rng.choice(VALUES)
        elif pick < 0.9:
            doc[field] = None
        # else: missing
    return doc


def messy(rng: random.Random, i: int) -> Doc:
    doc = tidy(rng, i)
    doc[rng.choice(["a", "b", "k"])] = rng.choice(
        [["x", "q"], ["y"], [], 5, {"x": 1}, "0123456789abcdef01234567"]
    )
    if rng.random() < 0.5:
        doc["t"] = rng.choice([7, "late", None, [3, 9], {"at": 1}, True])
    return doc


def condition(rng: random.Random) -> Any:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(VALUES)
    if kind == 1:
        return {"$eq": rng.choice(VALUES)}
    if kind == 2:
        return {"$in": rng.sample(VALUES, rng.randint(1, 3))}
    return {"$ne": rng.choice(VALUES)}


def query(rng: random.Random) -> Doc:
    fields = rng.sample(["a", "b", "k"], rng.randint(0, 3))
    return {field: condition(rng) for field in fields}


def keys(docs: list[Doc]) -> list[Any]:
    return [repr(doc.get("t")) for doc in docs]


def compare(coll: Collection[Doc], rng: random.Random, rounds: int) -> None:
    db = coll.database
    for _ in range(rounds):
        q = query(rng)
        plain = {"$and": [q]} if q else {"$and": [{}]}
        direction = rng.choice([ASCENDING, DESCENDING])
        skip, limit = rng.choice([(0, 0), (0, 5), (3, 10), (50, 7)])
        pushed = list(coll.find(q).sort("t", direction).skip(skip).limit(limit))
        sorted_here = list(coll.find(plain).sort("t", direction).skip(skip).limit(limit))
        assert keys(pushed) == keys(sorted_here), (q, direction, skip, limit)
        if limit == 0:
            assert {d["_id"] for d in pushed} == {d["_id"] for d in sorted_here}, q
        counted = db.command("count", coll.name, query=q, skip=skip, limit=limit)["n"]
        counted_here = db.command("count", coll.name, query=plain, skip=skip, limit=limit)["n"]
        assert counted == counted_here == len(coll.find(plain).skip(skip).limit(limit).to_list()), q


def make(db: Database[Doc]) -> Collection[Doc]:
    coll = db[f"pushdown_{new_id()}"]
    coll.create_index([("a", ASCENDING), ("b", ASCENDING), ("t", DESCENDING)], name="a_b_t")
    coll.create_index([("a", ASCENDING), ("t", ASCENDING)], name="a_t")
    coll.create_index([("t", DESCENDING)], name="t")
    coll.create_index([("b", ASCENDING)], name="b")
    return coll


def test_pushed_down_queries_agree_with_the_servers_own_on_tidy_data(db: Database[Doc]) -> None:
    rng = random.Random(18)
    coll = make(db)
    coll.insert_many([tidy(rng, i) for i in range(400)])
    compare(coll, rng, 120)
    if is_ferretdb(db):  # the pushdown was taken: SQLite reads the index in order
        plan = coll.find({"a": "x", "b": {"$in": ["y"]}}).sort("t", -1).limit(3).explain()
        assert any("USING INDEX" in step and step.endswith(")") and "_a_b_t" in step
                   for step in plan["queryPlanner"]["Plan"]), plan  # fmt: skip


def test_arrays_and_mixed_types_make_the_pushdown_step_aside(db: Database[Doc]) -> None:
    rng = random.Random(1818)
    coll = make(db)
    coll.insert_many([messy(rng, i) if i % 9 == 0 else tidy(rng, i) for i in range(400)])
    compare(coll, rng, 120)
    # one array among thousands of tidy documents is enough
    other = make(db)
    other.insert_many([tidy(rng, i) for i in range(300)])
    other.update_one({"_id": "d00150"}, {"$set": {"a": ["x", "y"], "b": ["q", "z"]}})
    compare(other, rng, 60)
    assert (
        other.count_documents({"a": "y"}) == db.command("count", other.name, query={"a": "y"})["n"]
    )
    assert db.command("count", other.name, query={"a": "x", "b": "z"})["n"] == len(
        other.find({"$and": [{"a": "x"}, {"b": "z"}]}).to_list()
    )


@pytest.mark.anyio
async def test_the_job_list_is_served_by_an_index(store: Store, db: Database[Doc]) -> None:
    """The job list's query (status + service, newest first) reads one index, on MongoDB
    and on the test server (``appliance.store.indexes``)."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    await store.jobs.insert_many([
        {"_id": new_id(), "service": f"s{i % 3}", "state": ["COMPLETED", "FAILED"][i % 2],
         "submitted_at": base + timedelta(seconds=i)} for i in range(60)
    ])  # fmt: skip
    total, page = await store.find_jobs(states=["COMPLETED"], services=["s1"], skip=2, limit=3)
    mine = [j for j in await store.jobs.find({"service": "s1", "state": "COMPLETED"}).to_list()]
    mine.sort(key=lambda j: j["submitted_at"], reverse=True)
    assert total == len(mine) == 10 and [j["_id"] for j in page] == [j["_id"] for j in mine[2:5]]
    query = {"kind": {"$ne": "task"}, "state": {"$in": ["COMPLETED"]}, "service": {"$in": ["s1"]}}
    plan = db[store.jobs.name].find(query).sort("submitted_at", -1).limit(10).explain()
    wanted = dict(JOB_INDEXES)["list_service_state"]
    if is_ferretdb(db):
        steps = plan["queryPlanner"]["Plan"]
        assert any("USING INDEX" in s and s.split(" (")[0].endswith("_list_service_state")
                   for s in steps), steps  # fmt: skip
    else:
        assert "list_service_state" in str(plan["queryPlanner"]["winningPlan"]), plan
    assert [k for k, _ in wanted][:3] == ["service", "state", "submitted_at"]
