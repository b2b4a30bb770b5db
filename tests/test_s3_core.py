"""s3:// URLs, the places a task may use and request signing (appliance.tes.s3,
appliance.s3sign): pure, no service."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from appliance.s3sign import EMPTY_SHA256, encode_path, encode_query, sign
from appliance.settings import Settings
from appliance.settingvalues import http_endpoint, s3_roots
from appliance.tes.s3 import Client, S3Error, Site, locate, prefixes_for, split

SITE = Settings(tes_s3_endpoint="http://s3.test:8333", tes_s3_roots=("shared", "work/{client}"))


def test_the_signature_is_the_one_aws_documents() -> None:
    # "Example: GET Object" of AWS's Signature Version 4 documentation for S3.
    headers = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {},
                   {"Range": "bytes=0-9"}, EMPTY_SHA256, access_key="AKIAIOSFODNN7EXAMPLE",
                   secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region="us-east-1",
                   now=datetime(2013, 5, 24, tzinfo=UTC))  # fmt: skip
    assert headers["Authorization"].endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in headers["Authorization"]
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_paths_and_queries_are_encoded_once_and_sorted() -> None:
    assert encode_path("/b/a key/ü+=&.txt") == "/b/a%20key/%C3%BC%2B%3D%26.txt"
    assert (
        encode_query({"uploadId": "a/b+c", "partNumber": "2"}) == "partNumber=2&uploadId=a%2Fb%2Bc"
    )
    assert encode_query({"uploads": ""}) == "uploads="


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://shared/x.fa", ("shared", "x.fa")), ("s3://work/ada/run/1/", ("work", "ada/run/1")),
     ("s3://shared/a%20b", ("shared", "a b")), ("s3://shared", ("shared", ""))],
)  # fmt: skip
def test_urls_split_into_bucket_and_key(url: str, expected: tuple[str, str]) -> None:
    assert split(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [("s3://Bad_Bucket/x", "not a bucket name"), ("s3://shared/a/../b", r"no '\.', '\.\.'"),
     ("s3://shared/a//b", "empty names"), ("s3://shared/./b", r"no '\.'"),
     ("s3://shared/a%0Ab", "control characters"), ("s3://shared/x?versionId=1", "expected s3://"),
     ("http://shared/x", "expected s3://")],
)  # fmt: skip
def test_urls_a_task_may_not_give(url: str, why: str) -> None:
    with pytest.raises(S3Error, match=why):
        split(url)


def test_a_client_uses_the_shared_bucket_and_its_own_prefix_only() -> None:
    assert prefixes_for(SITE.tes_s3_roots, "ada") == ["shared", "work/ada"]
    assert locate("s3://work/ada/in.fa", SITE, "ada") == ("work", "ada/in.fa")
    assert locate("s3://shared/in.fa", SITE, "bob") == ("shared", "in.fa")
    with pytest.raises(
        S3Error, match=r"outside the places tasks may use \(s3://shared, s3://work/bob\)"
    ):
        locate("s3://work/ada/in.fa", SITE, "bob")
    with pytest.raises(S3Error, match="outside"):
        locate("s3://work/adam/in.fa", SITE, "ada")  # a prefix of a name is not a folder
    with pytest.raises(S3Error, match="outside"):
        locate("s3://other/in.fa", SITE, "ada")
    # a client whose name cannot be a key's folder has no prefix of its own
    assert prefixes_for(SITE.tes_s3_roots, "../x") == ["shared"]


def test_without_an_endpoint_nothing_is_staged_from_s3() -> None:
    with pytest.raises(S3Error, match="not staged here"):
        locate("s3://shared/x", Settings(tes_s3_roots=("shared",)), "ada")
    with pytest.raises(S3Error, match="not staged here"):
        locate("s3://shared/x", Settings(tes_s3_endpoint="http://s3.test"), "ada")


@pytest.mark.parametrize(
    ("value", "why"),
    [("Bad_Bucket", "no bucket name"), ("work/{client}x", "whole name"), ("work/../x", r"no '\.', '\.\.'"),
     ("work/{client}/{client}", "at most once")],
)  # fmt: skip
def test_roots_a_site_may_not_set(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        s3_roots(value)
    assert s3_roots("shared/, work/{client}/runs") == ("shared", "work/{client}/runs")


def test_endpoints_take_no_path() -> None:
    assert http_endpoint("https://s3.test:8333/") == "https://s3.test:8333"
    assert http_endpoint("") == ""
    for bad in ("http://s3.test/bucket", "s3.test", "ftp://s3.test", "http://k:s@s3.test"):
        with pytest.raises(ValueError, match="no path"):
            http_endpoint(bad)


def test_requests_address_buckets_by_path_or_by_host() -> None:
    site = Site("https://s3.example.org:8443", "us-east-1", "AKID", "SECRET", False, 5 * 1024**2,
                30.0, 1024)  # fmt: skip
    path_style = Client(site)._request("GET", "work", "a b/c.fa")
    assert str(path_style.url) == "https://s3.example.org:8443/work/a%20b/c.fa"
    listing = Client(site)._request("GET", "work", "", {"list-type": "2", "prefix": "x/"})
    assert str(listing.url) == "https://s3.example.org:8443/work?list-type=2&prefix=x%2F"
    virtual = Client(replace(site, virtual_hosts=True))._request("GET", "work", "a b/c.fa")
    assert str(virtual.url) == "https://work.s3.example.org:8443/a%20b/c.fa"
    assert "Credential=AKID/" in virtual.headers["authorization"]
    assert virtual.headers["x-amz-content-sha256"] == EMPTY_SHA256
