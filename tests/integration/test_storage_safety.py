"""What storage promises when things go wrong: encryption at rest, corruption detected and never
served, interrupted uploads and crashes leave nothing behind, and the master key is respected."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from stratus.core.errors import DataCorrupted, NotFound
from stratus.iam.credentials import derive_key
from stratus.storage.blobs import KEYED_NAMES_MARKER
from stratus.storage.blobstore import BLOB_NAMES, BlobStore, open_store
from stratus.storage.encryption import load_or_create_master_key
from stratus.testing import LocalPlatform

MiB = 1024 * 1024
PROJECT = "default"


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def project_uid(p: LocalPlatform) -> str:
    with p.client() as c:
        return c.projects.get(PROJECT).metadata.uid


def keyed_store(p: LocalPlatform) -> BlobStore:
    """The platform's store as the platform names its files (the key comes from the master)."""
    master = load_or_create_master_key(None, p.home / "master.key")
    return open_store(str(p.home / "store"), name_key=derive_key(master, BLOB_NAMES))


def blob_path(p: LocalPlatform, sha256: str) -> Path:
    return Path(keyed_store(p).blob_path(project_uid(p), sha256))


def legacy_blob_path(p: LocalPlatform, sha256: str) -> Path:
    """Where a release before keyed names put the blob: named by the content's SHA-256."""
    uid = project_uid(p)
    return p.home / "store" / "blobs" / uid / sha256[:2] / sha256


def tmp_files(p: LocalPlatform) -> list[Path]:
    return files_under(p.home / "store" / "tmp")


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x55]))


def object_path(bucket: str, key: str) -> str:
    return f"/api/v1/projects/{PROJECT}/buckets/{bucket}/objects/{key}"


def open_put(p: LocalPlatform, bucket: str, key: str, length: int) -> socket.socket:
    """A raw connection that has sent an upload's headers announcing `length` bytes."""
    sock = socket.create_connection(("127.0.0.1", p.port))
    head = (
        f"PUT {object_path(bucket, key)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{p.port}\r\n"
        f"Authorization: Bearer {p.api_key}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


# --- (a) encryption at rest ------------------------------------------------------------------


def test_plaintext_never_reaches_disk(own_platform: LocalPlatform) -> None:
    marker = f"MARKER-{os.urandom(16).hex()}".encode()
    secret = b"TOP-SECRET-" * 10000 + marker + b"-END"
    with own_platform.client() as c:
        c.buckets.create("vault", project=PROJECT)
        version = c.buckets.upload("vault", "secret.txt", secret, project=PROJECT)
        # Several versions, one spanning frames, and a small one under another key.
        c.buckets.upload("vault", "secret.txt", marker * 200_000, project=PROJECT)
        c.buckets.upload("vault", "tiny", marker, project=PROJECT)
        assert c.buckets.read("vault", "secret.txt", version_id=version.version_id) == secret

    def assert_clean() -> None:
        checked = 0
        for path in files_under(own_platform.home):
            content = path.read_bytes()
            checked += 1
            assert marker not in content, f"plaintext marker found in {path}"
            assert b"TOP-SECRET-TOP-SECRET-" not in content, f"plaintext found in {path}"
        assert checked >= 4  # blobs, database, key, credentials at least

    assert_clean()  # while running (SQLite WAL and all)
    assert len(files_under(own_platform.home / "store" / "blobs")) == 3
    own_platform.stop()
    assert_clean()  # and after a clean stop has checkpointed the database


def test_file_names_do_not_confirm_the_content(own_platform: LocalPlatform) -> None:
    known = b"a file anyone could have: " + b"public dataset row\n" * 5000
    with own_platform.client() as c:
        c.buckets.create("names", project=PROJECT)
        version = c.buckets.upload("names", "a.csv", known, project=PROJECT)
        again = c.buckets.upload("names", "copy-of-a.csv", known, project=PROJECT)
        sha = hashlib.sha256(known).hexdigest()
        assert version.sha256 == again.sha256 == sha  # the public digest is the content's
        assert c.buckets.read("names", "copy-of-a.csv", project=PROJECT) == known
    [stored] = files_under(own_platform.home / "store" / "blobs")  # stored once
    assert sha not in str(stored)
    assert stored == blob_path(own_platform, sha)


def test_a_store_with_legacy_names_keeps_reading(own_platform: LocalPlatform) -> None:
    """Files named by their SHA-256, as releases before keyed names wrote them, still read;
    the next start without the store's marker renames them."""
    first, second = b"older content " * 3000, b"other older content " * 3000
    with own_platform.client() as c:
        c.buckets.create("old", project=PROJECT)
        c.buckets.upload("old", "first", first, project=PROJECT)
        c.buckets.upload("old", "second", second, project=PROJECT)
    shas = [hashlib.sha256(data).hexdigest() for data in (first, second)]
    keyed = [blob_path(own_platform, sha) for sha in shas]
    legacy = [legacy_blob_path(own_platform, sha) for sha in shas]
    own_platform.stop()
    for old, new in zip(keyed, legacy, strict=True):  # as a release before keyed names had it
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
    own_platform.start()
    with own_platform.client() as c:  # the marker says renaming was done: reads fall back
        assert c.buckets.read("old", "first", project=PROJECT) == first
        c.buckets.upload("old", "third", second, project=PROJECT)  # dedup across both names
        assert c.buckets.read("old", "third", project=PROJECT) == second
    assert legacy[0].exists() and legacy[1].exists()
    own_platform.stop()
    (own_platform.home / "store" / KEYED_NAMES_MARKER).unlink()
    own_platform.start()
    assert (own_platform.home / "store" / KEYED_NAMES_MARKER).exists()
    assert not any(path.exists() for path in legacy)
    assert all(path.exists() for path in keyed)
    assert len(files_under(own_platform.home / "store" / "blobs")) == 2
    with own_platform.client() as c:
        assert c.buckets.read("old", "first", project=PROJECT) == first
        assert c.buckets.read("old", "second", project=PROJECT) == second


# --- (b) corruption --------------------------------------------------------------------------


def test_corruption_mid_blob_never_yields_wrong_bytes(
    own_platform: LocalPlatform, tmp_path: Path
) -> None:
    data = os.urandom(5 * MiB + 123)
    with own_platform.client() as c:
        c.buckets.create("models", project=PROJECT)
        version = c.buckets.upload("models", "weights.bin", data, project=PROJECT)
        assert version.sha256 is not None
        path = blob_path(own_platform, version.sha256)
        flip_byte(path, path.stat().st_size // 2)

        target = tmp_path / "downloads" / "weights.bin"
        target.parent.mkdir()
        with pytest.raises(DataCorrupted):
            c.buckets.download("models", "weights.bin", target, project=PROJECT)
        assert not target.exists()
        assert list(target.parent.iterdir()) == []  # no partial temp file either

        # An existing file is left as it was.
        target.write_bytes(b"previous content")
        with pytest.raises(DataCorrupted):
            c.buckets.download("models", "weights.bin", target, project=PROJECT)
        assert target.read_bytes() == b"previous content"
        assert [p.name for p in target.parent.iterdir()] == ["weights.bin"]

        with pytest.raises(DataCorrupted):
            c.buckets.read("models", "weights.bin", project=PROJECT)

    # Over raw HTTP the stream stops early: what arrived is a true prefix, never other bytes.
    headers = {"authorization": f"Bearer {own_platform.api_key}"}
    received = bytearray()
    with (
        httpx.Client(base_url=own_platform.url, headers=headers, timeout=30) as http,
        pytest.raises(httpx.TransportError),
        http.stream("GET", object_path("models", "weights.bin")) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
    assert 0 < len(received) < len(data)  # cut off mid-stream, after verified frames
    assert bytes(received) == data[: len(received)]
    # The platform is still fine.
    with own_platform.client() as c:
        assert c.health()["status"] == "ok"
        c.buckets.upload("models", "other", b"fine", project=PROJECT)
        assert c.buckets.read("models", "other", project=PROJECT) == b"fine"


@pytest.mark.parametrize("size", [100, 3 * MiB], ids=["one-frame", "three-frames"])
def test_corrupt_first_frame_is_a_500_problem(
    own_platform: LocalPlatform, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    with own_platform.client() as c:
        c.buckets.create("b", project=PROJECT)
        version = c.buckets.upload("b", "k", data, project=PROJECT)
        assert version.sha256 is not None
        path = blob_path(own_platform, version.sha256)
        flip_byte(path, 80)  # inside the first frame's ciphertext

        headers = {"authorization": f"Bearer {own_platform.api_key}"}
        with httpx.Client(base_url=own_platform.url, headers=headers, timeout=30) as http:
            response = http.get(object_path("b", "k"))
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "data-corrupted"
        assert "corrupted" in problem["detail"]
        assert data[:50] not in response.content

        with pytest.raises(DataCorrupted, match="corrupted"):
            c.buckets.download("b", "k", tmp_path / "out.bin", project=PROJECT)
        assert not (tmp_path / "out.bin").exists()
        # HEAD answers from the metadata alone: the object still exists.
        assert (
            c.buckets.head_object("b", "k", project=PROJECT)["x-stratus-sha256"] == version.sha256
        )


def test_missing_blob_file_is_reported_not_hidden(own_platform: LocalPlatform) -> None:
    with own_platform.client() as c:
        c.buckets.create("b", project=PROJECT)
        version = c.buckets.upload("b", "k", b"will vanish", project=PROJECT)
        assert version.sha256 is not None
        blob_path(own_platform, version.sha256).unlink()
        with pytest.raises(DataCorrupted, match="missing"):
            c.buckets.read("b", "k", project=PROJECT)


# --- (c) interrupted uploads -----------------------------------------------------------------


def test_upload_cut_off_by_the_client_leaves_nothing(own_platform: LocalPlatform) -> None:
    with own_platform.client() as c:
        c.buckets.create("b", project=PROJECT)
        previous = c.buckets.upload("b", "existing", b"v1", project=PROJECT)

        sock = open_put(own_platform, "b", "fresh", 10 * MiB)
        sock.sendall(os.urandom(3 * MiB))
        sock.close()
        sock = open_put(own_platform, "b", "existing", 10 * MiB)
        sock.sendall(os.urandom(3 * MiB))
        sock.close()

        wait_for(lambda: tmp_files(own_platform) == [], what="the temp files to be removed")
        with pytest.raises(NotFound):
            c.buckets.head_object("b", "fresh", project=PROJECT)
        # The object that existed keeps its version, and only that one.
        assert c.buckets.read("b", "existing", project=PROJECT) == b"v1"
        assert [v.version_id for v in c.buckets.list_versions("b", project=PROJECT)] == [
            previous.version_id
        ]
        assert len(files_under(own_platform.home / "store" / "blobs")) == 1


def test_upload_whose_source_fails_leaves_nothing(own_platform: LocalPlatform) -> None:
    class SourceBroke(Exception):
        pass

    def body() -> Iterator[bytes]:
        for _ in range(3):
            yield os.urandom(MiB)
        raise SourceBroke("the disk went away")

    with own_platform.client() as c:
        c.buckets.create("b", project=PROJECT)
        with pytest.raises(SourceBroke):
            c.buckets.upload("b", "k", body(), project=PROJECT)
        wait_for(lambda: tmp_files(own_platform) == [], what="the temp file to be removed")
        with pytest.raises(NotFound):
            c.buckets.head_object("b", "k", project=PROJECT)
        assert c.buckets.list_versions("b", project=PROJECT) == []
        assert files_under(own_platform.home / "store" / "blobs") == []
        # The next upload of the same key works.
        c.buckets.upload("b", "k", b"ok", project=PROJECT)
        assert c.buckets.read("b", "k", project=PROJECT) == b"ok"


# --- (d) a crash in the middle of an upload --------------------------------------------------


def test_kill_during_upload_then_restart_sweeps_the_temp_file(tmp_path: Path) -> None:
    p = LocalPlatform(tmp_path / "home")
    try:
        p.start()
        with p.client() as c:
            c.buckets.create("b", project=PROJECT)
            c.buckets.upload("b", "kept", b"committed before the crash", project=PROJECT)

        sock = open_put(p, "b", "big.bin", 200 * MiB)
        try:
            deadline = time.monotonic() + 60
            while not any(f.stat().st_size > 2 * MiB for f in tmp_files(p)):
                assert time.monotonic() < deadline, "the upload never reached the store"
                sock.sendall(os.urandom(256 * 1024))
                time.sleep(0.02)
            p.kill()
        finally:
            sock.close()
        [leftover] = tmp_files(p)

        # A restart with the default grace period (an hour) keeps the young temp file...
        p.start()
        assert tmp_files(p) == [leftover]
        p.stop()
        # ...and one with no grace period sweeps it while starting.
        p.env = {"STRATUS_STORE_TMP_MAX_AGE_SECONDS": "0"}
        p.start()
        assert tmp_files(p) == []
        with p.client() as c:
            with pytest.raises(NotFound):
                c.buckets.head_object("b", "big.bin", project=PROJECT)
            assert c.buckets.read("b", "kept", project=PROJECT) == b"committed before the crash"
            data = os.urandom(3 * MiB)
            c.buckets.upload("b", "big.bin", data, project=PROJECT)
            assert c.buckets.read("b", "big.bin", project=PROJECT) == data
            assert c.health()["status"] == "ok"
    finally:
        p.stop()


# --- (e) the master key ----------------------------------------------------------------------


def new_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_generated_master_key_and_credentials_are_private(own_platform: LocalPlatform) -> None:
    for name in ("master.key", "credentials"):
        mode = stat.S_IMODE((own_platform.home / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {mode:o}"
    key = base64.b64decode((own_platform.home / "master.key").read_text().strip())
    assert len(key) == 32


def test_configured_master_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = new_master_key()
    data = os.urandom(2 * MiB + 5)
    p = LocalPlatform(home, env={"STRATUS_MASTER_KEY": key})
    try:
        p.start()
        assert not (home / "master.key").exists()
        with p.client() as c:
            c.buckets.create("b", project=PROJECT)
            c.buckets.upload("b", "k", data, project=PROJECT)
        for path in files_under(home):
            assert key.encode() not in path.read_bytes(), f"the master key is in {path}"
        p.stop()

        # Another master key: the control plane refuses to start, before it reads anything.
        p.env = {"STRATUS_MASTER_KEY": new_master_key()}
        with pytest.raises(RuntimeError, match="the master key does not match"):
            p.start()
        assert not (home / "master.key").exists()
        p.stop()

        # The right key again: everything is readable, nothing was lost.
        p.env = {"STRATUS_MASTER_KEY": key}
        p.start()
        with p.client() as c:
            got = c.buckets.read("b", "k", project=PROJECT)
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            assert [v.key for v in c.buckets.list_versions("b", project=PROJECT)] == ["k"]
    finally:
        p.stop()


def test_bad_master_key_refuses_to_start(tmp_path: Path) -> None:
    p = LocalPlatform(tmp_path / "home", env={"STRATUS_MASTER_KEY": "too-short"})
    try:
        with pytest.raises(RuntimeError, match="STRATUS_MASTER_KEY must be base64") as info:
            p.start(timeout=30)
        assert "Traceback" not in str(info.value)
    finally:
        p.stop()
    assert not (tmp_path / "home" / "master.key").exists()
