"""Blob file names are keyed: a file's name does not confirm which content it holds, dedup still
works, and a store written with the old SHA-256 names keeps reading until its files are renamed."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator

import pytest

from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.storage.blobstore import BlobStore, open_store

NAME_KEY = b"k" * 32
DATA_KEY = bytes(range(32))
KEY_ID = "dk_test01"
PROJECT = "prj_one"


def keys(key_id: str) -> bytes:
    assert key_id == KEY_ID
    return DATA_KEY


def files_under(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def put(store: BlobStore, data: bytes, project: str = PROJECT) -> str:
    with store.open_writer(project, KEY_ID, DATA_KEY) as writer:
        writer.write(data)
        return writer.commit().sha256


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def keyed(root: pathlib.Path) -> BlobStore:
    store = open_store(str(root), name_key=NAME_KEY)
    store.ensure_ready()
    return store


@pytest.fixture
def legacy(root: pathlib.Path) -> BlobStore:
    """The same directory as a release before keyed names wrote it."""
    store = open_store(str(root))
    store.ensure_ready()
    return store


def test_a_stored_file_is_not_named_by_the_sha256_of_its_content(
    keyed: BlobStore, root: pathlib.Path
) -> None:
    data = b"a well-known public file\n" * 1000
    sha = put(keyed, data)
    assert sha == hashlib.sha256(data).hexdigest()  # the public digest is unchanged
    [stored] = files_under(root / "blobs")
    assert sha not in str(stored)
    assert stored.name == keyed.blob_name(PROJECT, sha) != sha
    assert str(stored) == keyed.blob_path(PROJECT, sha)
    assert b"".join(keyed.read(PROJECT, sha, keys)) == data


def test_names_differ_by_key_and_by_project(keyed: BlobStore, root: pathlib.Path) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    other_key = open_store(str(root), name_key=b"o" * 32)
    assert keyed.blob_name(PROJECT, sha) != other_key.blob_name(PROJECT, sha)
    assert keyed.blob_name(PROJECT, sha) != keyed.blob_name("prj_two", sha)
    assert keyed.blob_name(PROJECT, sha) == keyed.blob_name(PROJECT, sha)


def test_the_same_content_is_stored_once(keyed: BlobStore, root: pathlib.Path) -> None:
    data = b"twice" * 5000
    assert put(keyed, data) == put(keyed, data)
    assert len(files_under(root / "blobs")) == 1
    assert files_under(root / "tmp") == []


def test_a_legacy_store_still_reads_and_deletes(
    legacy: BlobStore, keyed: BlobStore, root: pathlib.Path
) -> None:
    data = b"written before keyed names" * 2000
    sha = put(legacy, data)
    [old] = files_under(root / "blobs")
    assert old.name == sha
    assert keyed.exists(PROJECT, sha)
    assert b"".join(keyed.read(PROJECT, sha, keys)) == data
    assert b"".join(keyed.open_read(PROJECT, sha, keys)) == data
    keyed.delete(PROJECT, sha)
    assert not keyed.exists(PROJECT, sha) and files_under(root / "blobs") == []
    with pytest.raises(DataCorrupted, match="missing"):
        b"".join(keyed.read(PROJECT, sha, keys))


def test_a_legacy_file_is_adopted_under_its_keyed_name(
    legacy: BlobStore, keyed: BlobStore, root: pathlib.Path
) -> None:
    data = b"rename me" * 1000
    sha = put(legacy, data)
    assert keyed.adopt_legacy_name(PROJECT, sha)
    [stored] = files_under(root / "blobs")
    assert str(stored) == keyed.blob_path(PROJECT, sha) and sha not in str(stored)
    assert b"".join(keyed.read(PROJECT, sha, keys)) == data
    assert not keyed.adopt_legacy_name(PROJECT, sha)  # nothing left to adopt
    assert not legacy.adopt_legacy_name(PROJECT, sha)  # a store without a key has no other name


def test_adopting_when_both_names_exist_keeps_the_keyed_file(
    legacy: BlobStore, keyed: BlobStore, root: pathlib.Path
) -> None:
    data = b"both" * 1000
    sha = put(legacy, data)
    put(keyed, data)  # written again after the upgrade, before the rename
    assert len(files_under(root / "blobs")) == 2
    assert keyed.adopt_legacy_name(PROJECT, sha)
    assert files_under(root / "blobs") == [pathlib.Path(keyed.blob_path(PROJECT, sha))]


def test_small_objects_replace_atomically(keyed: BlobStore, root: pathlib.Path) -> None:
    assert keyed.read_small_object("audit/checkpoint.json") is None
    keyed.write_small_object("audit/checkpoint.json", b"one")
    keyed.write_small_object("audit/checkpoint.json", b"two")
    assert keyed.read_small_object("audit/checkpoint.json") == b"two"
    assert (root / "audit" / "checkpoint.json").read_bytes() == b"two"
    assert files_under(root / "tmp") == []


@pytest.mark.parametrize("key", ["", "../x", "/abs", "a//b", "blobs/x", "tmp/x", "A", "a/../b"])
def test_small_object_keys_stay_outside_the_blobs(keyed: BlobStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        keyed.write_small_object(key, b"x")


# --- on an S3-compatible server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.mark.s3
def test_keyed_names_legacy_names_and_small_objects_on_s3(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="names")
    legacy = open_store("s3://names/prefix", s3_endpoint)
    keyed = open_store("s3://names/prefix", s3_endpoint, name_key=NAME_KEY)
    keyed.ensure_ready()

    def keys_in_bucket() -> list[str]:
        listing = client.list_objects_v2(Bucket="names", Prefix="prefix/blobs/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    old = put(legacy, b"old" * 1000)
    new = put(keyed, b"new" * 1000)
    assert keys_in_bucket() == sorted(
        [
            f"prefix/blobs/{PROJECT}/{old[:2]}/{old}",
            f"prefix/blobs/{PROJECT}/{keyed.blob_name(PROJECT, new)[:2]}/"
            f"{keyed.blob_name(PROJECT, new)}",
        ]
    )
    assert b"".join(keyed.read(PROJECT, old, keys)) == b"old" * 1000
    assert keyed.adopt_legacy_name(PROJECT, old)
    assert all(old not in key and new not in key for key in keys_in_bucket())
    assert b"".join(keyed.read(PROJECT, old, keys)) == b"old" * 1000

    assert keyed.read_small_object("audit/checkpoint.json") is None
    keyed.write_small_object("audit/checkpoint.json", b"anchored")
    assert keyed.read_small_object("audit/checkpoint.json") == b"anchored"
