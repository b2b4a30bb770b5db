"""s3:// inputs and outputs of TES tasks, staged by the scheduler against a real S3
server (SeaweedFS, started by scripts/test: APPLIANCE_TEST_S3), checked with boto3, an
S3 client that is not ours."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import tes

from appliance.checks import check_s3
from appliance.settings import Settings
from appliance.tes.s3 import Client, S3Error, Site
from tests.helpers import TEST_IMAGE
from tests.test_tes import ALICE, BOB, client, post, tag_alpine, wait
from tests.web.stack import Stack, running_stack

pytestmark = [pytest.mark.services, pytest.mark.anyio]
PART = 5 * 1024 * 1024  # the smallest part S3 takes: outputs above it go up in parts


class Server:
    def __init__(self, endpoint: str, key: str, secret: str) -> None:
        self.endpoint, self.key, self.secret = endpoint, key, secret
        self.boto = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                                 aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.boto.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def uploads(self, bucket: str, key: str) -> list[str]:
        """Multipart uploads of ``key`` begun and neither completed nor aborted."""
        found = self.boto.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [item["UploadId"] for item in found if item["Key"] == key]

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = self.boto.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(item["Key"] for item in found)


@pytest.fixture(scope="module")
def s3() -> Server:
    given = os.environ.get("APPLIANCE_TEST_S3", "").split()
    if len(given) != 3:
        pytest.fail("APPLIANCE_TEST_S3 is not set: run the tests with scripts/test")
    server = Server(*given)
    for bucket in ("shared", "work", "elsewhere"):
        if bucket not in {b["Name"] for b in server.boto.list_buckets()["Buckets"]}:
            server.boto.create_bucket(Bucket=bucket)
    return server


def keys_file(root: Path, s3: Server) -> Path:
    path = root / "s3-keys"
    path.write_text(f"{s3.key}\n{s3.secret}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, database_name: str,
          s3: Server) -> Iterator[Stack]:  # fmt: skip
    root = tmp_path_factory.mktemp("tes-s3")
    tag_alpine(root)
    clients = root / "clients"
    clients.write_text("".join(f"{name} {hashlib.sha256(token.encode()).hexdigest()}\n"
                               for name, token in (("alice", ALICE), ("bob", BOB))))  # fmt: skip
    with running_stack(root, mongodb_uri, database_name, tes_enabled=True,
                       tes_tokens_file=str(clients), tes_images=[TEST_IMAGE],
                       tes_s3_endpoint=s3.endpoint, tes_s3_roots=["shared", "work/{client}", "gone"],
                       tes_s3_credentials_file=str(keys_file(root, s3)),
                       tes_s3_part_bytes=PART) as stack:  # fmt: skip
        yield stack


def test_a_task_reads_and_writes_s3(stack: Stack, s3: Server) -> None:
    """A file and a prefix in, a file, a folder, a wildcard and a multipart file out; each
    checked through boto3. An input boto3 sent in parts (an ETag with -N) comes in too."""
    big_in = os.urandom(2 * PART + 1234)
    s3.boto.upload_fileobj(io.BytesIO(big_in), "work", "alice/in/big.bin",
                           Config=boto3.s3.transfer.TransferConfig(multipart_threshold=PART,
                                                                   multipart_chunksize=PART))  # fmt: skip
    assert s3.boto.head_object(Bucket="work", Key="alice/in/big.bin")["ETag"].endswith('-3"')
    s3.boto.put_object(Bucket="shared", Key="seqs/a b ü.fa", Body=b">a\nACGT\n")
    s3.boto.put_object(Bucket="shared", Key="seqs/deep/c.fa", Body=b">c\nTTTT\n")
    s3.boto.put_object(Bucket="shared", Key="seqs-other/not-mine.fa", Body=b"no")
    script = ("cat /in/seqs/*.fa /in/seqs/deep/c.fa > /out/all.fa && cmp /in/big.bin /in/big.bin"
              " && mkdir -p /out/many/x && for i in 1 2 3; do echo $i > /out/many/x/$i.txt; done"
              " && echo one > /out/w1.log && echo two > /out/w2.log"
              f" && head -c {3 * PART + 7} /dev/zero | tr '\\0' 'q' > /out/large.txt"
              " && md5sum /in/big.bin > /out/big.md5")  # fmt: skip
    task = tes.Task(
        inputs=[tes.Input(path="/in/big.bin", url="s3://work/alice/in/big.bin"),
                tes.Input(path="/in/seqs", url="s3://shared/seqs", type="DIRECTORY")],
        outputs=[tes.Output(path="/out/all.fa", url="s3://work/alice/out/all.fa"),
                 tes.Output(path="/out/many", url="s3://work/alice/out/many", type="DIRECTORY"),
                 tes.Output(path="/out/*.log", path_prefix="/out", url="s3://work/alice/logs"),
                 tes.Output(path="/out/large.txt", url="s3://work/alice/out/large.txt"),
                 tes.Output(path="/out/big.md5", url="s3://work/alice/out/big.md5")],
        executors=[tes.Executor(image=TEST_IMAGE, command=["sh", "-c", script])],
        volumes=["/out"],
    )  # fmt: skip
    cli = client(stack)
    done = wait(cli, cli.create_task(task))
    assert done.state == "COMPLETE", done.logs
    assert s3.read("work", "alice/out/all.fa") == b">a\nACGT\n>c\nTTTT\n"
    assert s3.keys("work", "alice/out/many/") == [f"alice/out/many/x/{i}.txt" for i in (1, 2, 3)]
    assert s3.read("work", "alice/logs/w2.log") == b"two\n"
    large = s3.read("work", "alice/out/large.txt")
    assert large == b"q" * (3 * PART + 7)
    assert s3.boto.head_object(Bucket="work", Key="alice/out/large.txt")["ETag"].endswith('-4"')
    assert (
        s3.read("work", "alice/out/big.md5").split()[0].decode() == hashlib.md5(big_in).hexdigest()
    )
    sizes = {o.url: int(o.size_bytes) for o in done.logs[0].outputs}
    assert sizes["s3://work/alice/out/large.txt"] == 3 * PART + 7
    assert sizes["s3://work/alice/logs/w1.log"] == 4
    assert not s3.uploads("work", "alice/out/large.txt")


@pytest.mark.parametrize(
    ("url", "words"),
    [("s3://work/bob/x", "outside the places tasks may use (s3://shared, s3://work/alice, s3://gone)"),
     ("s3://elsewhere/x", "outside the places"), ("s3://work/alice/../bob/x", "'..'"),
     ("s3://No_Bucket/x", "not a bucket name")],
)  # fmt: skip
def test_urls_outside_a_clients_places_are_refused_at_once(stack: Stack, url: str,
                                                           words: str) -> None:  # fmt: skip
    body = {"executors": [{"image": TEST_IMAGE, "command": ["true"]}]}
    for field in ("inputs", "outputs"):
        answer = post(stack, {**body, field: [{"url": url, "path": "/data/x"}]})
        assert answer.status_code == 400, answer.text
        assert f"{field}[0].url" in answer.text and words in answer.text, answer.text
    info = client(stack, BOB).get_service_info()
    assert "s3://work/bob" in info.storage and "s3://work/alice" not in info.storage


def test_staging_failures_are_system_errors_that_say_why(stack: Stack, s3: Server) -> None:
    s3.boto.put_object(Bucket="shared", Key="there.txt", Body=b"x")
    cli = client(stack)
    run = [tes.Executor(image=TEST_IMAGE, command=["sh", "-c", "echo hi > /out/o.txt"])]
    tasks = {
        "NoSuchKey": tes.Task(inputs=[tes.Input(path="/in/x", url="s3://shared/missing.txt")],
                              executors=run),
        "no object is stored below": tes.Task(
            inputs=[tes.Input(path="/in/d", url="s3://shared/no-such-prefix", type="DIRECTORY")],
            executors=run),
        "NoSuchBucket": tes.Task(
            outputs=[tes.Output(path="/out/o.txt", url="s3://gone/o.txt")], volumes=["/out"],
            executors=run),
    }  # fmt: skip
    ids = {why: cli.create_task(task) for why, task in tasks.items()}
    for why, task_id in ids.items():
        done = wait(cli, task_id)
        assert done.state == "SYSTEM_ERROR", why
        [reason] = done.logs[0].system_logs
        assert why in reason, reason
        assert "appliance-test" not in reason and s3.secret not in reason  # no keys shown


async def test_a_failed_upload_leaves_no_parts_behind(s3: Server, tmp_path: Path) -> None:
    class Breaks(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise OSError(5, "Input/output error")
            return super().read(size)

    keys = keys_file(tmp_path, s3)
    broken = f"broken-{tmp_path.name}-{os.getpid()}.bin"
    settings = Settings(tes_s3_endpoint=s3.endpoint, tes_s3_roots=("shared",),
                        tes_s3_credentials_file=keys, tes_s3_part_bytes=PART)  # fmt: skip
    async with Client(Site.of(settings)) as store:
        with pytest.raises(OSError, match="Input/output"):
            await store.put("shared", broken, Breaks(b"z" * (3 * PART)), 3 * PART)
        assert not s3.uploads("shared", broken)
        assert broken not in s3.keys("shared")
        # awkward keys go there and back unchanged
        for key in ("a b/ü+=&;,$@!'()*.txt", "x~y/%41.txt"):
            await store.put("shared", key, io.BytesIO(b"odd"), 3)
            sink = io.BytesIO()
            assert await store.get("shared", key, sink, 100) == 3 and sink.getvalue() == b"odd"
            assert key in s3.keys("shared")
        with pytest.raises(S3Error, match="larger than 2 bytes"):
            await store.get("shared", "x~y/%41.txt", io.BytesIO(), 2)


async def test_wrong_keys_are_named_as_the_server_names_them(s3: Server, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{s3.key}\nnot-the-secret\n")
    settings = Settings(tes_s3_endpoint=s3.endpoint, tes_s3_credentials_file=keys)
    async with Client(Site.of(settings)) as store:
        with pytest.raises(S3Error, match="answered 403") as raised:
            await store.get("shared", "there.txt", io.BytesIO(), 100)
    assert "not-the-secret" not in str(raised.value)
    keys.write_text("only one line\n")
    with pytest.raises(S3Error, match="two lines"):
        Site.of(settings)


async def test_check_lists_each_roots_bucket_with_the_sites_keys(
    s3: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(tes_enabled=True, tes_s3_endpoint=s3.endpoint,
                        tes_s3_roots=("shared", "work/{client}/runs", "no-such-bucket"),
                        tes_s3_credentials_file=keys_file(tmp_path, s3))  # fmt: skip
    assert await check_s3(settings) == 1
    out, err = capsys.readouterr()
    assert "s3://shared can be listed" in out and "s3://work/{client}/runs can be listed" in out
    assert "listing s3://no-such-bucket/: the S3 server answered 404 (NoSuchBucket" in err
    assert s3.secret not in out + err
