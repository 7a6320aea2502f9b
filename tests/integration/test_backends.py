"""The same user flow on every backend: SQLite or PostgreSQL for metadata, a folder or S3 for
objects. Each test starts its own platform (and its own PostgreSQL database)."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform

MiB = 1024 * 1024


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own; yields its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"stratus_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def s3_bucket(s3_server: Any) -> str:
    name = f"stratus-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return name


def s3_client(s3_server: Any) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3_keys(s3_server: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3_client(s3_server).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


# --- the flow --------------------------------------------------------------------------------


def user_flow(c: Client) -> tuple[bytes, str]:
    """Create, upload twice, read both versions, delete; returns (plaintext, project)."""
    project = f"flow-{uuid.uuid4().hex[:8]}"
    marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}".encode()
    data = (marker + os.urandom(1000)) * (5 * MiB // 2 // (len(marker) + 1000) + 1)
    data = data[: 5 * MiB // 2]

    c.projects.create(project, description="backend flow")
    c.buckets.create("datasets", project=project, labels={"kind": "raw"})
    v1 = c.buckets.upload("datasets", "train/part-0.bin", data, project=project)
    assert v1.size == len(data) and v1.sha256 == hashlib.sha256(data).hexdigest()
    v2 = c.buckets.upload("datasets", "train/part-0.bin", b"small second version", project=project)

    versions = c.buckets.list_versions("datasets", project=project)
    assert [(v.version_id, v.is_latest) for v in versions] == [
        (v2.version_id, True),
        (v1.version_id, False),
    ]
    listing = c.buckets.list_objects("datasets", delimiter="/", project=project)
    assert listing.prefixes == ["train/"] and listing.objects == []
    assert c.buckets.get("datasets", project=project).status.objects == 1

    got = c.buckets.read("datasets", "train/part-0.bin", version_id=v1.version_id, project=project)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert c.buckets.read("datasets", "train/part-0.bin", project=project) == (
        b"small second version"
    )
    streamed = hashlib.sha256()
    for chunk in c.buckets.stream(
        "datasets", "train/part-0.bin", version_id=v1.version_id, project=project
    ):
        streamed.update(chunk)
    assert streamed.hexdigest() == v1.sha256

    marker_version = c.buckets.delete_object("datasets", "train/part-0.bin", project=project)
    assert marker_version.is_delete_marker
    with pytest.raises(NotFound):
        c.buckets.read("datasets", "train/part-0.bin", project=project)
    assert (
        c.buckets.read("datasets", "train/part-0.bin", version_id=v1.version_id, project=project)
        == data
    )
    assert len(c.buckets.list_versions("datasets", project=project)) == 3

    events = c.audit.list(project=project, order="asc")
    steps = [(e.action, e.outcome) for e in events]
    assert steps == [
        ("projects.create", "success"),
        ("buckets.create", "success"),
        ("objects.put", "success"),
        ("objects.put", "success"),
        ("objects.delete", "success"),
    ], steps
    assert all(e.actor == "user:admin" for e in events)
    assert c.audit.verify().ok
    return data, project


def check_store_on_s3(s3_server: Any, bucket: str, plaintext: bytes) -> None:
    blobs = s3_keys(s3_server, bucket, "stratus/blobs/")
    assert len(blobs) == 2, blobs  # the two versions' contents
    assert s3_keys(s3_server, bucket, "stratus/tmp/") == []
    s3 = s3_client(s3_server)
    marker = plaintext[: plaintext.index(b"-MARKER-") + 8 + 32]
    for key in blobs:
        stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert stored.startswith(b"STRB")
        assert marker not in stored and b"small second version" not in stored
    big = max(blobs, key=lambda k: s3.head_object(Bucket=bucket, Key=k)["ContentLength"])
    assert s3.head_object(Bucket=bucket, Key=big)["ContentLength"] > len(plaintext)


# --- the backends ----------------------------------------------------------------------------


def test_sqlite_and_local_store(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "home") as p, p.client() as c:
        user_flow(c)
        assert len(list((p.home / "store" / "blobs").rglob("*/*/*"))) == 2


@pytest.mark.postgres
def test_postgres(tmp_path: Path, pg_database: str) -> None:
    with LocalPlatform(tmp_path / "home", db=pg_database) as p, p.client() as c:
        user_flow(c)
    assert not (tmp_path / "home" / "stratus.db").exists()


@pytest.mark.postgres
def test_postgres_data_survives_a_restart(tmp_path: Path, pg_database: str) -> None:
    p = LocalPlatform(tmp_path / "home", db=pg_database)
    try:
        p.start()
        with p.client() as c:
            data, project = user_flow(c)
        p.stop()
        p.start()
        with p.client() as c:
            [first, *_] = reversed(c.buckets.list_versions("datasets", project=project))
            got = c.buckets.read(
                "datasets", first.key, version_id=first.version_id, project=project
            )
            assert got == data
            assert c.audit.verify().ok
    finally:
        p.stop()


@pytest.mark.s3
def test_s3_store(tmp_path: Path, s3_server: Any, s3_bucket: str) -> None:
    p = LocalPlatform(
        tmp_path / "home",
        store=f"s3://{s3_bucket}/stratus",
        s3_endpoint_url=s3_server.endpoint,
        env=s3_server.env,
    )
    with p, p.client() as c:
        assert c.health()["checks"]["store"] == "ok"
        data, _ = user_flow(c)
        check_store_on_s3(s3_server, s3_bucket, data)
    assert not (tmp_path / "home" / "store").exists()


@pytest.mark.s3
def test_s3_missing_bucket_is_not_ready(tmp_path: Path, s3_server: Any) -> None:
    p = LocalPlatform(
        tmp_path / "home",
        store=f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/stratus",
        s3_endpoint_url=s3_server.endpoint,
        env=s3_server.env,
    )
    try:
        with pytest.raises(RuntimeError, match="does not exist"):
            p.start(timeout=60)
    finally:
        p.stop()


@pytest.mark.postgres
@pytest.mark.s3
def test_postgres_and_s3(tmp_path: Path, pg_database: str, s3_server: Any, s3_bucket: str) -> None:
    p = LocalPlatform(
        tmp_path / "home",
        db=pg_database,
        store=f"s3://{s3_bucket}/stratus",
        s3_endpoint_url=s3_server.endpoint,
        env=s3_server.env,
    )
    with p, p.client() as c:
        data, _ = user_flow(c)
        check_store_on_s3(s3_server, s3_bucket, data)
    assert not (tmp_path / "home" / "stratus.db").exists()
    assert not (tmp_path / "home" / "store").exists()


# --- concurrency on PostgreSQL ---------------------------------------------------------------


def blob_refcounts(database_url: str, sha256: str) -> list[int]:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT refcount FROM blobs WHERE sha256 = %s", (sha256,)).fetchall()
    return [row[0] for row in rows]


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def target(i: int) -> None:
        try:
            start.wait(30)
            work(i)
        except BaseException as exc:  # collected and reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


@pytest.mark.postgres
def test_postgres_concurrent_puts_and_audit(tmp_path: Path, pg_database: str) -> None:
    with LocalPlatform(tmp_path / "home", db=pg_database) as p:
        with p.client() as c:
            c.buckets.create("shared", project="default")
            before = c.audit.verify()
            assert before.ok
        bodies = [f"writer {i} ".encode() * (1000 + i) for i in range(8)]

        def put(i: int) -> None:
            with p.client() as client:
                client.buckets.upload("shared", "same/key.txt", bodies[i], project="default")

        assert run_threads(8, put) == []

        with p.client() as c:
            versions = c.buckets.list_versions("shared", project="default")
            assert len(versions) == 8
            assert sum(v.is_latest for v in versions) == 1
            assert sorted(v.sha256 for v in versions) == sorted(
                hashlib.sha256(b).hexdigest() for b in bodies
            )
            latest = c.buckets.read("shared", "same/key.txt", project="default")
            assert latest in bodies
            head = c.buckets.head_object("shared", "same/key.txt", project="default")
            assert head["x-stratus-version-id"] == versions[0].version_id
            status = c.buckets.get("shared", project="default").status
            assert (status.objects, status.size_bytes) == (1, len(latest))

        # The same content from many writers at once, to new keys: one blob, counted right.
        same = os.urandom(200_000)
        sha = hashlib.sha256(same).hexdigest()
        for round_ in range(3):

            def put_same(i: int, round_: int = round_) -> None:
                with p.client() as client:
                    client.buckets.upload("shared", f"r{round_}/k{i % 2}", same, project="default")

            assert run_threads(8, put_same) == []
        with p.client() as c:
            copies = c.buckets.list_versions("shared", "r", project="default")
            assert len(copies) == 24 and {v.sha256 for v in copies} == {sha}
            assert sum(v.is_latest for v in copies) == 6
        assert blob_refcounts(pg_database, sha) == [24]

        # Many writers appending to the audit chain at once: it stays whole and in order.
        def mutate(i: int) -> None:
            with p.client() as client:
                for j in range(5):
                    client.buckets.create(f"b-{i}-{j}", project="default")
                    client.buckets.upload(f"b-{i}-{j}", "k", b"x", project="default")
                with pytest.raises(NotFound):  # a failed request is audited too
                    client.buckets.delete("missing", project="default")

        assert run_threads(8, mutate) == []
        with p.client() as c:
            verification = c.audit.verify()
            assert verification.ok, verification
            assert verification.checked >= before.checked + 8 + 8 * 11
            events = c.audit.list(order="asc", limit=1000)
            seqs = [e.seq for e in events]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert sum(e.action == "buckets.create" for e in events) == 1 + 40
            assert sum(e.outcome == "failure" for e in events) == 8
