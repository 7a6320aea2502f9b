"""The content-addressed blob store on a local directory and on an S3-compatible server."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stratus.core.errors import DataCorrupted, InvalidInput, ServiceUnavailable
from stratus.storage.blobstore import BlobInfo, BlobStore, open_store
from stratus.storage.encryption import CHUNK_BYTES, KEY_BYTES, BlobEncoder

KEY = bytes(range(KEY_BYTES))
KEY_ID = "dk_test01"
PROJECT = "prj_one"
MODES = [pytest.param(KEY_ID, KEY, id="aes-gcm"), pytest.param(None, None, id="plain")]
SIZES = [0, 1, CHUNK_BYTES, CHUNK_BYTES * 5 // 2]


def keys(key_id: str) -> bytes:
    assert key_id == KEY_ID
    return KEY


def pattern(size: int, seed: int = 0) -> bytes:
    block = f"stratus-blob-{seed}-".encode() + bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


def put(store: BlobStore, data: bytes, key_id: str | None = KEY_ID, key: bytes | None = KEY) -> str:
    with store.open_writer(PROJECT, key_id, key) as writer:
        for i in range(0, len(data), 300_000):  # pieces that do not line up with frames
            writer.write(data[i : i + 300_000])
        info = writer.commit()
    assert info == BlobInfo(hashlib.sha256(data).hexdigest(), len(data))
    return info.sha256


def files_under(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: pathlib.Path) -> BlobStore:
    blob_store = open_store(str(root))
    blob_store.ensure_ready()
    return blob_store


# --- local store ------------------------------------------------------------------------------


def test_open_store_has_no_side_effects(root: pathlib.Path) -> None:
    open_store(str(root))
    assert not root.exists()


def test_ensure_ready_creates_directories(root: pathlib.Path) -> None:
    blob_store = open_store(f"file://{root}")
    blob_store.ensure_ready()
    assert (root / "blobs").is_dir() and (root / "tmp").is_dir()
    blob_store.ping()


def test_unreachable_local_store(tmp_path: pathlib.Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("x")
    with pytest.raises(ServiceUnavailable):
        open_store(str(occupied / "store")).ensure_ready()
    with pytest.raises(ServiceUnavailable):
        open_store(str(tmp_path / "never-created")).ping()


def test_open_store_rejects_unknown_protocols() -> None:
    with pytest.raises(InvalidInput, match="gopher://host/x"):
        open_store("gopher://host/x")
    with pytest.raises(InvalidInput):
        open_store("s3://")


def test_relative_paths_become_absolute(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blob_store = open_store("relative/store")
    assert blob_store.root == str(tmp_path / "relative" / "store")


@pytest.mark.parametrize("key_id,key", MODES)
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(store: BlobStore, key_id: str | None, key: bytes | None, size: int) -> None:
    data = pattern(size)
    sha = put(store, data, key_id, key)
    assert store.exists(PROJECT, sha)
    assert b"".join(store.read(PROJECT, sha, keys)) == data
    assert b"".join(store.open_read(PROJECT, sha, keys)) == data
    assert all(len(c) <= CHUNK_BYTES for c in store.read(PROJECT, sha, keys))


def test_layout_and_encryption_at_rest(store: BlobStore, root: pathlib.Path) -> None:
    data = b"the secret weights " * 100_000
    sha = put(store, data)
    assert store.blob_path(PROJECT, sha) == f"{root}/blobs/{PROJECT}/{sha[:2]}/{sha}"
    raw = pathlib.Path(store.blob_path(PROJECT, sha)).read_bytes()
    assert raw.startswith(b"STRB\x01\x01")
    assert b"secret weights" not in raw
    assert files_under(root / "tmp") == []


def test_same_content_is_stored_once(store: BlobStore, root: pathlib.Path) -> None:
    data = pattern(CHUNK_BYTES + 5)
    first = put(store, data)
    before = pathlib.Path(store.blob_path(PROJECT, first)).read_bytes()
    assert put(store, data) == first
    assert files_under(root / "blobs") == [pathlib.Path(store.blob_path(PROJECT, first))]
    assert pathlib.Path(store.blob_path(PROJECT, first)).read_bytes() == before  # not replaced
    assert files_under(root / "tmp") == []


def test_abort_and_context_manager_leave_no_temp(store: BlobStore, root: pathlib.Path) -> None:
    writer = store.open_writer(PROJECT, KEY_ID, KEY)
    writer.write(pattern(CHUNK_BYTES * 2))
    assert len(files_under(root / "tmp")) == 1
    writer.abort()
    writer.abort()  # idempotent
    with pytest.raises(RuntimeError):
        writer.write(b"more")
    with pytest.raises(ValueError, match="boom"):
        with store.open_writer(PROJECT, KEY_ID, KEY) as failing:
            failing.write(b"partial")
            raise ValueError("boom")
    with store.open_writer(PROJECT, None, None) as forgotten:
        forgotten.write(b"never committed")
    assert files_under(root / "tmp") == []
    assert files_under(root / "blobs") == []


def test_commit_twice_or_write_after_commit_fails(store: BlobStore) -> None:
    writer = store.open_writer(PROJECT, KEY_ID, KEY)
    writer.write(b"abc")
    writer.commit()
    with pytest.raises(RuntimeError):
        writer.write(b"d")
    with pytest.raises(RuntimeError):
        writer.commit()
    writer.abort()  # no effect after commit
    assert store.exists(PROJECT, hashlib.sha256(b"abc").hexdigest())


def test_missing_blob(store: BlobStore) -> None:
    sha = hashlib.sha256(b"nope").hexdigest()
    assert not store.exists(PROJECT, sha)
    with pytest.raises(DataCorrupted, match="missing from the store"):
        list(store.read(PROJECT, sha, keys))
    with pytest.raises(DataCorrupted, match="missing from the store"):
        store.open_read(PROJECT, sha, keys)
    store.delete(PROJECT, sha)  # missing is fine


def test_delete_and_list(store: BlobStore) -> None:
    shas = {put(store, pattern(10, seed)) for seed in range(3)}
    other = store.open_writer("prj_two", None, None)
    other.write(b"elsewhere")
    other.commit()
    assert set(store.list_project_blobs(PROJECT)) == shas
    assert list(store.list_project_blobs("prj_empty")) == []
    gone = shas.pop()
    store.delete(PROJECT, gone)
    assert not store.exists(PROJECT, gone)
    assert set(store.list_project_blobs(PROJECT)) == shas


def test_bad_names_are_refused(store: BlobStore) -> None:
    with pytest.raises(InvalidInput):
        store.blob_path(PROJECT, "../../etc/passwd")
    with pytest.raises(InvalidInput):
        store.blob_path("../x", "0" * 64)
    with pytest.raises(InvalidInput):
        store.open_writer("a/b", None, None)


def _flip(path: str, offset: int) -> None:
    raw = bytearray(pathlib.Path(path).read_bytes())
    raw[offset] ^= 0x04
    pathlib.Path(path).write_bytes(bytes(raw))


def _frame_starts(path: str) -> list[int]:
    raw = pathlib.Path(path).read_bytes()
    pos, starts = 7 + raw[6], []
    while pos < len(raw):
        starts.append(pos)
        pos += 5 + int.from_bytes(raw[pos + 1 : pos + 5], "big")
    return starts


@pytest.mark.parametrize("key_id,key", MODES)
def test_corrupt_first_frame_fails_open_read_before_any_byte(
    store: BlobStore, key_id: str | None, key: bytes | None
) -> None:
    sha = put(store, pattern(CHUNK_BYTES * 5 // 2), key_id, key)
    path = store.blob_path(PROJECT, sha)
    _flip(path, _frame_starts(path)[0] + 100)
    with pytest.raises(DataCorrupted, match=f"blob {sha[:12]} is corrupted"):
        store.open_read(PROJECT, sha, keys)


@pytest.mark.parametrize("key_id,key", MODES)
@pytest.mark.parametrize("frame", [1, 2])
def test_corrupt_later_frame_yields_only_a_good_prefix(
    store: BlobStore, key_id: str | None, key: bytes | None, frame: int
) -> None:
    data = pattern(CHUNK_BYTES * 5 // 2)
    sha = put(store, data, key_id, key)
    path = store.blob_path(PROJECT, sha)
    _flip(path, _frame_starts(path)[frame] + 1000)
    got: list[bytes] = []
    with pytest.raises(DataCorrupted):
        for chunk in store.open_read(PROJECT, sha, keys):
            got.append(chunk)
    assert data.startswith(b"".join(got))


def test_content_that_does_not_match_its_name_is_refused(store: BlobStore) -> None:
    real = put(store, pattern(100, 1))
    claimed = hashlib.sha256(b"something else").hexdigest()
    target = pathlib.Path(store.blob_path(PROJECT, claimed))
    target.parent.mkdir(parents=True)
    shutil.copy(store.blob_path(PROJECT, real), target)
    # Every frame authenticates, yet not one byte leaves before the digest mismatch.
    with pytest.raises(DataCorrupted, match="does not match its SHA-256"):
        store.open_read(PROJECT, claimed, keys)


def test_wrong_key_is_detected(store: BlobStore) -> None:
    sha = put(store, pattern(1000))
    with pytest.raises(DataCorrupted):
        store.open_read(PROJECT, sha, lambda key_id: bytes(KEY_BYTES))


def test_truncated_blob_is_detected(store: BlobStore) -> None:
    sha = put(store, pattern(CHUNK_BYTES * 5 // 2))
    path = pathlib.Path(store.blob_path(PROJECT, sha))
    path.write_bytes(path.read_bytes()[: _frame_starts(str(path))[2]])
    with pytest.raises(DataCorrupted, match="without a last frame"):
        list(store.read(PROJECT, sha, keys))


def test_files_are_closed_when_the_reader_stops_early(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = put(store, pattern(CHUNK_BYTES * 3))
    opened: list[Any] = []
    real_open = store._fs.open

    def spy_open(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = real_open(path, mode, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(store._fs, "open", spy_open)
    chunks = store.open_read(PROJECT, sha, keys)
    assert len(next(chunks)) == CHUNK_BYTES
    chunks.close()  # type: ignore[attr-defined]
    plain: Iterator[bytes] = store.read(PROJECT, sha, keys)
    next(plain)
    plain.close()  # type: ignore[attr-defined]
    assert len(opened) == 2 and all(handle.closed for handle in opened)


def test_sweep_tmp_removes_only_old_files(store: BlobStore, root: pathlib.Path) -> None:
    old, fresh = root / "tmp" / "old", root / "tmp" / "fresh"
    old.write_bytes(b"left by a crash")
    fresh.write_bytes(b"being written")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert store.sweep_tmp(600) == 1
    assert not old.exists() and fresh.exists()
    assert store.sweep_tmp(600) == 0


def test_sweep_tmp_without_tmp_dir(root: pathlib.Path) -> None:
    assert open_store(str(root)).sweep_tmp(0) == 0


def test_encoder_frames_match_store_format(store: BlobStore) -> None:
    # A blob written by hand with the encoder reads back through the store.
    data = b"hand made"
    encoder = BlobEncoder(None, None)
    target = pathlib.Path(store.blob_path(PROJECT, hashlib.sha256(data).hexdigest()))
    target.parent.mkdir(parents=True)
    target.write_bytes(encoder.header() + encoder.frame(data, last=True))
    assert b"".join(store.read(PROJECT, hashlib.sha256(data).hexdigest(), keys)) == data


# --- S3 ---------------------------------------------------------------------------------------


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


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.mark.s3
@pytest.mark.usefixtures("aws_env")
def test_s3_round_trip(s3_endpoint: str) -> None:
    import boto3

    missing = open_store("s3://no-such-bucket/prefix", s3_endpoint)
    with pytest.raises(ServiceUnavailable, match="no-such-bucket"):
        missing.ensure_ready()

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bucket")
    store = open_store("s3://bucket/prefix", s3_endpoint)
    assert store.root == "bucket/prefix"
    store.ensure_ready()
    store.ping()

    data = pattern(CHUNK_BYTES * 5 // 2)
    sha = put(store, data)
    assert put(store, data) == sha  # dedupe
    assert store.exists(PROJECT, sha)
    assert b"".join(store.open_read(PROJECT, sha, keys)) == data
    assert list(store.list_project_blobs(PROJECT)) == [sha]

    listed = client.list_objects_v2(Bucket="bucket", Prefix="prefix/")
    keys_in_bucket = [obj["Key"] for obj in listed.get("Contents", [])]
    assert keys_in_bucket == [f"prefix/blobs/{PROJECT}/{sha[:2]}/{sha}"]  # no temp left
    raw = client.get_object(Bucket="bucket", Key=keys_in_bucket[0])["Body"].read()
    assert raw.startswith(b"STRB") and data[:1000] not in raw

    client.put_object(Bucket="bucket", Key="prefix/tmp/crashed", Body=b"partial")
    assert store.sweep_tmp(3600) == 0
    assert store.sweep_tmp(-60) == 1  # any age counts as older than -60s
    assert store.sweep_tmp(-60) == 0

    store.delete(PROJECT, sha)
    store.delete(PROJECT, sha)
    assert not store.exists(PROJECT, sha)
    with pytest.raises(DataCorrupted, match="missing from the store"):
        store.open_read(PROJECT, sha, keys)
    assert list(store.list_project_blobs(PROJECT)) == []
