"""Artifact grants: a worker fetches an artifact's files from the store with nothing but the
grant, into a per-node cache keyed by content; expired, tampered or failed fetches leave nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from stratus.core.clock import utcnow
from stratus.core.database import Database
from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.iam.tables import ProjectRow
from stratus.migrations.runner import upgrade
from stratus.storage import grants
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobStore, open_store
from stratus.storage.encryption import CHUNK_BYTES, BlobEncoder
from stratus.storage.grants import (
    COMPLETE_MARKER,
    ArtifactGrant,
    FetchFailed,
    GrantExpired,
    fetch,
)
from stratus.storage.keyring import Keyring

NAME_KEY = b"n" * 32


def content(size: int, seed: int) -> bytes:
    block = f"artifact-{seed}-".encode() + bytes(range(256))
    return (block * (size // len(block) + 1))[:size]


FILES = {
    "model.bin": content(CHUNK_BYTES * 5 // 2, 1),  # several frames
    "conf/settings.json": b'{"layers": 3}\n',
    "conf/empty.txt": b"",
}


@dataclass
class World:
    db: Database
    blobs: Blobs
    project_uid: str
    other_uid: str
    root: pathlib.Path  # the store
    cache: pathlib.Path

    def put(self, files: dict[str, bytes], project_uid: str | None = None) -> list[Any]:
        """Store the files' bytes; the (path, sha256, size) list a grant is asked for."""
        listed = []
        for path, data in files.items():
            info = self.blobs.write(project_uid or self.project_uid, [data])
            listed.append((path, info.sha256, info.size))
        return listed

    def object_of(self, sha256: str, project_uid: str | None = None) -> pathlib.Path:
        return pathlib.Path(self.blobs.store.blob_path(project_uid or self.project_uid, sha256))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A migrated database with projects p and q, copied for each test (migrating takes ~1 s)."""
    path = tmp_path_factory.mktemp("grants") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    with db.transaction() as session:
        session.add_all([ProjectRow(name="p"), ProjectRow(name="q")])
    db.dispose()
    return path


def make_world(tmp_path: pathlib.Path, template: pathlib.Path, encrypt: bool) -> World:
    shutil.copyfile(template, tmp_path / "stratus.db")
    db = Database(f"sqlite:///{tmp_path / 'stratus.db'}")
    with db.transaction() as session:
        names = {
            name: uid for name, uid in session.execute(select(ProjectRow.name, ProjectRow.uid))
        }
        uids = names["p"], names["q"]
    store = open_store(str(tmp_path / "store"), name_key=NAME_KEY)
    store.ensure_ready()
    blobs = Blobs(db, store, Keyring(db, os.urandom(32)), encrypt=encrypt)
    return World(db, blobs, *uids, tmp_path / "store", tmp_path / "cache")


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def world(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, migrated: pathlib.Path
) -> Iterator[World]:
    made = make_world(tmp_path, migrated, encrypt=request.param)
    yield made
    made.db.dispose()


@pytest.fixture
def encrypted(tmp_path: pathlib.Path, migrated: pathlib.Path) -> Iterator[World]:
    made = make_world(tmp_path, migrated, encrypt=True)
    yield made
    made.db.dispose()


def tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != COMPLETE_MARKER
    }


def leftovers(cache: pathlib.Path) -> list[str]:
    """Everything in the cache but its three empty folders."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.parent != cache)


# --- a local store -------------------------------------------------------------------------------


def test_a_fetched_artifact_equals_what_was_stored(world: World) -> None:
    grant = world.blobs.grant(world.project_uid, world.put(FILES))
    assert all(f.url.startswith("file:///") for f in grant.files)
    if world.blobs.encrypt:
        key_id, key = world.blobs.keyring.current(world.project_uid)
        assert all(f.key_id == key_id for f in grant.files)
        assert {k: v.get_secret_value() for k, v in grant.keys.items()} == {
            key_id: base64.b64encode(key).decode()
        }
    else:
        assert grant.keys == {} and all(f.key_id is None for f in grant.files)

    folder = fetch(grant, world.cache)
    assert folder == world.cache / "artifacts" / grant.digest
    assert tree(folder) == FILES
    assert (folder / COMPLETE_MARKER).is_file()
    assert not any((world.cache / "tmp").iterdir())
    # Private: folders 0700; files 0400 (read-only: hard links share them between artifacts).
    for path in [world.cache, *world.cache.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name == COMPLETE_MARKER:
            assert mode == 0o600, path
        else:
            assert mode == 0o400, path
    blobs = sorted(p.name for p in (world.cache / "blobs").iterdir())
    assert blobs == sorted(hashlib.sha256(data).hexdigest() for data in FILES.values())


def test_a_grant_travels_as_json_and_hides_its_secrets_in_reprs(encrypted: World) -> None:
    grant = encrypted.blobs.grant(encrypted.project_uid, encrypted.put(FILES))
    [key] = grant.keys.values()
    text = grant.model_dump_json()
    assert key.get_secret_value() in text
    shown = repr(grant) + str(grant)
    assert key.get_secret_value() not in shown and "file://" not in shown
    assert key.get_secret_value() not in str(grant.model_dump())  # a dict for logs hides it too
    again = ArtifactGrant.model_validate_json(text)
    assert again == grant
    assert tree(fetch(again, encrypted.cache)) == FILES


def test_a_second_fetch_reads_nothing_from_the_store(world: World) -> None:
    listed = world.put(FILES)
    grant = world.blobs.grant(world.project_uid, listed)
    first = fetch(grant, world.cache)
    for _, sha, _ in listed:
        world.blobs.store.delete(world.project_uid, sha)
    assert not any(p.is_file() for p in (world.root / "blobs").rglob("*"))
    assert fetch(grant, world.cache) == first
    assert tree(first) == FILES


def test_artifacts_that_share_a_file_store_it_once(world: World) -> None:
    shared = content(300_000, 7)
    one = world.put({"weights.bin": shared, "a.txt": b"first"})
    two = world.put({"nested/weights.bin": shared, "b.txt": b"second"})
    first = fetch(world.blobs.grant(world.project_uid, one), world.cache)
    grant = world.blobs.grant(world.project_uid, two)
    world.blobs.store.delete(world.project_uid, hashlib.sha256(shared).hexdigest())
    second = fetch(grant, world.cache)  # the shared file comes from the cache
    assert first != second
    assert tree(second) == {"nested/weights.bin": shared, "b.txt": b"second"}
    assert len(list((world.cache / "blobs").iterdir())) == 3
    one_file, two_file = first / "weights.bin", second / "nested" / "weights.bin"
    assert one_file.stat().st_ino == two_file.stat().st_ino
    assert one_file.stat().st_nlink == 3  # the blob and the two artifacts


def test_the_same_bytes_under_two_paths_are_one_blob(world: World) -> None:
    same = content(70_000, 5)
    grant = world.blobs.grant(world.project_uid, world.put({"a/w.bin": same, "b/w.bin": same}))
    assert grant.files[0].url == grant.files[1].url
    folder = fetch(grant, world.cache)
    assert tree(folder) == {"a/w.bin": same, "b/w.bin": same}
    assert len(list((world.cache / "blobs").iterdir())) == 1


def test_an_expired_grant_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant = world.blobs.grant(world.project_uid, world.put(FILES), ttl_seconds=60)
    assert grant.expires_at - utcnow() <= timedelta(seconds=60)
    later = grant.expires_at + timedelta(seconds=1)
    monkeypatch.setattr(grants, "utcnow", lambda: later)
    with pytest.raises(GrantExpired, match="expired at .*ask for a new one"):
        fetch(grant, world.cache)
    assert leftovers(world.cache) == []
    monkeypatch.undo()
    fetch(grant, world.cache)
    monkeypatch.setattr(grants, "utcnow", lambda: later)
    with pytest.raises(GrantExpired):  # cached or not, an expired grant opens nothing
        fetch(grant, world.cache)


def test_a_grant_that_expires_mid_fetch_keeps_the_files_it_fetched(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = world.blobs.grant(world.project_uid, world.put(FILES))
    moments = iter([utcnow(), utcnow(), grant.expires_at])  # the fetch, file 1, file 2
    monkeypatch.setattr(grants, "utcnow", lambda: next(moments))
    with pytest.raises(GrantExpired, match=r"before conf/.* was downloaded"):
        fetch(grant, world.cache)
    assert not any((world.cache / "artifacts").iterdir())
    assert not any((world.cache / "tmp").iterdir())
    assert len(list((world.cache / "blobs").iterdir())) == 1  # complete and verified


def test_ttl_is_bounded(world: World) -> None:
    listed = world.put({"a": b"a"})
    for ttl in (0, -5, grants.MAX_TTL_SECONDS + 1):
        with pytest.raises(InvalidInput, match="a grant lasts"):
            world.blobs.grant(world.project_uid, listed, ttl_seconds=ttl)


def tamper_with_the_grant(world: World, grant: ArtifactGrant) -> ArtifactGrant:
    # The grant claims other bytes for model.bin than the store holds.
    files = [
        f.model_copy(update={"sha256": hashlib.sha256(b"other").hexdigest()})
        if f.path == "model.bin"
        else f
        for f in grant.files
    ]
    return grant.model_copy(update={"files": files})


def tamper_with_a_frame(world: World, grant: ArtifactGrant) -> ArtifactGrant:
    [file] = [f for f in grant.files if f.path == "model.bin"]
    target = world.object_of(file.sha256)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    return grant


def swap_the_content(world: World, grant: ArtifactGrant) -> ArtifactGrant:
    # A well-formed blob under the right name and key, holding other bytes of the same size.
    [file] = [f for f in grant.files if f.path == "model.bin"]
    key = world.blobs.keyring.get(file.key_id) if file.key_id else None
    encoder = BlobEncoder(file.key_id, key)
    other = content(file.size, 99)
    frames = [
        encoder.frame(other[i : i + CHUNK_BYTES], last=i + CHUNK_BYTES >= len(other))
        for i in range(0, len(other), CHUNK_BYTES)
    ]
    world.object_of(file.sha256).write_bytes(encoder.header() + b"".join(frames))
    return grant


@pytest.mark.parametrize("tamper", [tamper_with_the_grant, tamper_with_a_frame, swap_the_content])
def test_a_tampered_file_is_refused_and_leaves_nothing(world: World, tamper: Any) -> None:
    grant = tamper(world, world.blobs.grant(world.project_uid, world.put(FILES)))
    with pytest.raises(DataCorrupted, match=r"model\.bin \(blob [0-9a-f]{12}\) .*corrupted"):
        fetch(grant, world.cache)
    assert not any((world.cache / "artifacts").iterdir())
    assert not any((world.cache / "tmp").iterdir())
    model_sha = next(f.sha256 for f in grant.files if f.path == "model.bin")
    assert not (world.cache / "blobs" / model_sha).exists()


def test_a_failed_download_names_the_file_and_leaves_nothing(world: World) -> None:
    listed = world.put(FILES)
    grant = world.blobs.grant(world.project_uid, listed)
    world.blobs.store.delete(world.project_uid, listed[0][1])
    with pytest.raises(FetchFailed, match="model.bin cannot be read: .* does not exist"):
        fetch(grant, world.cache)
    assert not any((world.cache / "artifacts").iterdir())
    assert not any((world.cache / "tmp").iterdir())


def test_an_unreachable_url_names_the_file(world: World) -> None:
    grant = world.blobs.grant(world.project_uid, world.put({"w.bin": b"weights"}))
    [file] = grant.files
    moved = file.model_copy(update={"url": "http://127.0.0.1:9/bucket/object?X-Amz-Signature=s"})
    grant = grant.model_copy(update={"files": [moved]})
    with pytest.raises(FetchFailed, match="w.bin could not be downloaded") as raised:
        fetch(grant, world.cache)
    assert "X-Amz-Signature" not in str(raised.value)  # a URL is a credential: never shown
    assert leftovers(world.cache) == []


def test_concurrent_fetches_end_with_one_complete_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = world.blobs.grant(world.project_uid, world.put(FILES))
    downloaded: list[str] = []
    download = grants._Cache.download

    def counted(cache: Any, grant: ArtifactGrant, file: Any, client: Any) -> None:
        downloaded.append(file.path)
        download(cache, grant, file, client)

    monkeypatch.setattr(grants._Cache, "download", counted)
    start = threading.Barrier(6)
    results: list[pathlib.Path | BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(fetch(grant, world.cache))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [world.cache / "artifacts" / grant.digest] * 6
    assert [p.name for p in (world.cache / "artifacts").iterdir()] == [grant.digest]
    assert not any((world.cache / "tmp").iterdir())
    assert tree(world.cache / "artifacts" / grant.digest) == FILES
    assert sorted(downloaded) == sorted(FILES)  # each blob once, however many fetch it


def test_what_a_killed_fetch_left_is_swept(world: World) -> None:
    grant = world.blobs.grant(world.project_uid, world.put({"a": b"a"}))
    (world.cache / "tmp" / ".stale-folder").mkdir(parents=True)
    (world.cache / "tmp" / ".stale-folder" / "half").write_bytes(b"x")
    (world.cache / "tmp" / ".fresh").write_bytes(b"y")
    old = utcnow().timestamp() - grants.STALE_TEMP_SECONDS - 60
    os.utime(world.cache / "tmp" / ".stale-folder", (old, old))
    fetch(grant, world.cache)
    assert [p.name for p in (world.cache / "tmp").iterdir()] == [".fresh"]


# --- what a grant holds --------------------------------------------------------------------------


def test_a_grant_holds_only_the_keys_its_blobs_need(
    tmp_path: pathlib.Path, migrated: pathlib.Path
) -> None:
    world = make_world(tmp_path, migrated, encrypt=False)
    try:
        plain = world.put({"old.txt": b"written before encryption was on"})
        world.blobs.encrypt = True
        sealed = world.put({"new.txt": b"written after"})
        world.put({"theirs.txt": b"another project"}, project_uid=world.other_uid)
        grant = world.blobs.grant(world.project_uid, plain + sealed)
        key_id, _ = world.blobs.keyring.current(world.project_uid)
        assert set(grant.keys) == {key_id}
        assert [f.key_id for f in grant.files] == [None, key_id]
        assert tree(fetch(grant, world.cache)) == {
            "old.txt": b"written before encryption was on",
            "new.txt": b"written after",
        }
        assert world.blobs.grant(world.project_uid, plain).keys == {}
    finally:
        world.db.dispose()


def test_a_blob_naming_another_projects_key_is_refused(encrypted: World) -> None:
    # Someone who can write to the store copies project q's blob under p's name for it: the
    # grant must not hand q's data key to p's worker.
    data = b"q's secret"
    [(_, sha, _)] = encrypted.put({"x": data}, project_uid=encrypted.other_uid)
    target = encrypted.object_of(sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encrypted.object_of(sha, encrypted.other_uid).read_bytes())
    with pytest.raises(DataCorrupted, match="not the project's"):
        encrypted.blobs.grant(encrypted.project_uid, [("x", sha, len(data))])


def test_a_blob_under_its_legacy_name_is_granted(encrypted: World) -> None:
    legacy = BlobStore(encrypted.blobs.store._fs, encrypted.blobs.store.root)  # no name key
    key_id, key = encrypted.blobs.keyring.current(encrypted.project_uid)
    with legacy.open_writer(encrypted.project_uid, key_id, key) as writer:
        writer.write(b"from before keyed names")
        sha = writer.commit().sha256
    grant = encrypted.blobs.grant(encrypted.project_uid, [("old.txt", sha, 23)])
    assert grant.files[0].url.endswith(f"/{sha}")
    assert tree(fetch(grant, encrypted.cache)) == {"old.txt": b"from before keyed names"}


def test_a_missing_blob_cannot_be_granted(world: World) -> None:
    with pytest.raises(DataCorrupted, match="missing from the store"):
        world.blobs.grant(world.project_uid, [("a", hashlib.sha256(b"none").hexdigest(), 4)])


def granted(files: list[dict[str, Any]], keys: dict[str, str] | None = None) -> ArtifactGrant:
    return ArtifactGrant.model_validate(
        {"expires_at": utcnow() + timedelta(minutes=1), "files": files, "keys": keys or {}}
    )


def entry(path: str, key_id: str | None = None) -> dict[str, Any]:
    return {"path": path, "sha256": "0" * 64, "size": 0, "url": "file:///x", "key_id": key_id}


KEY = "A" * 43 + "="  # base64 of 32 bytes


@pytest.mark.parametrize(
    ("files", "keys", "error"),
    [
        ([entry("../up")], None, "segments"),
        ([entry("/abs")], None, "relative"),
        ([entry("a\\b")], None, "relative"),
        ([entry("a//b")], None, "segments"),
        ([entry("a"), entry("a")], None, "twice"),
        ([entry("a"), entry("a/b")], None, "both as a file and as a folder"),
        ([entry(COMPLETE_MARKER)], None, "marker"),
        ([entry("a", "dk_1")], None, "holds no data key dk_1"),
        ([entry("a")], {"dk_1": KEY}, "no file needs data key dk_1"),
        ([entry("a", "dk_1")], {"dk_1": "c2hvcnQ="}, "not base64 of 32 bytes"),
    ],
)
def test_a_malformed_grant_is_refused(
    files: list[dict[str, Any]], keys: dict[str, str] | None, error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        granted(files, keys)


def test_a_grant_needs_an_aware_expiry() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ArtifactGrant.model_validate({"expires_at": "2030-01-01T00:00:00", "files": []})
    assert granted([entry("a", "dk_1")], {"dk_1": KEY}).files[0].key_id == "dk_1"


# --- an S3-compatible store (moto) ---------------------------------------------------------------


def signature_is_valid(url: str) -> bool:
    """Check a SigV4 presigned URL as S3 does (moto's server serves them without checking)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(query)["X-Amz-Signature"]
    unsigned = urlunsplit(
        parts._replace(query=urlencode([(k, v) for k, v in query if k != "X-Amz-Signature"]))
    )
    fields = dict(query)
    region = fields["X-Amz-Credential"].split("/")[2]
    auth = S3SigV4QueryAuth(
        Credentials("testing", "testing"), "s3", region, expires=int(fields["X-Amz-Expires"])
    )
    request = AWSRequest(method="GET", url=unsigned)
    request.context["timestamp"] = fields["X-Amz-Date"]
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return bool(expected == given)


@pytest.mark.s3
def test_presigned_urls_fetch_from_s3_and_read_one_object_each(
    s3_server: Any, tmp_path: pathlib.Path, migrated: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    s3_server.create_bucket("grants")
    store = open_store("s3://grants/prefix", s3_server.endpoint, name_key=NAME_KEY)
    store.ensure_ready()
    world = make_world(tmp_path, migrated, encrypt=True)
    try:
        world.blobs.store = store
        files = {"model.bin": content(CHUNK_BYTES + 10, 3), "other.bin": b"another object"}
        listed = world.put(files)
        grant = world.blobs.grant(world.project_uid, listed, ttl_seconds=120)
        model, other = grant.files
        query = dict(parse_qsl(urlsplit(model.url).query))
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert query["X-Amz-Expires"] == "120"
        assert urlsplit(model.url).path == "/" + store.blob_path(world.project_uid, model.sha256)

        # Over the wire the store holds ciphertext only; the worker decrypts with the grant.
        raw = httpx.get(model.url).content
        assert raw.startswith(b"STRB") and files["model.bin"][:1000] not in raw
        folder = fetch(grant, world.cache)
        assert tree(folder) == files

        # Each URL's signature covers its object's path: pointed at another object, it is
        # not valid (S3 answers 403 SignatureDoesNotMatch).
        assert signature_is_valid(model.url) and signature_is_valid(other.url)
        stolen = urlsplit(model.url)._replace(path=urlsplit(other.url).path).geturl()
        assert not signature_is_valid(stolen)
        assert not signature_is_valid(model.url.replace("X-Amz-Expires=120", "X-Amz-Expires=9999"))

        # A second fetch, or one of another artifact made of cached files, needs no store.
        for _, sha, _ in listed:
            store.delete(world.project_uid, sha)
        assert fetch(grant, world.cache) == folder
        sharing = grant.model_copy(update={"files": [other]})
        assert tree(fetch(sharing, world.cache)) == {"other.bin": b"another object"}
    finally:
        world.db.dispose()


@pytest.mark.s3
def test_a_missing_s3_object_names_the_file(
    s3_server: Any, tmp_path: pathlib.Path, migrated: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    s3_server.create_bucket("grants-missing")
    store = open_store("s3://grants-missing/p", s3_server.endpoint, name_key=NAME_KEY)
    world = make_world(tmp_path, migrated, encrypt=True)
    try:
        world.blobs.store = store
        listed = world.put({"w.bin": b"weights"})
        grant = world.blobs.grant(world.project_uid, listed)
        store.delete(world.project_uid, listed[0][1])
        with pytest.raises(FetchFailed, match=r"w\.bin could not be downloaded: .*HTTP 404"):
            fetch(grant, world.cache)
        assert leftovers(world.cache) == []
    finally:
        world.db.dispose()
