"""Buckets and versioned objects on the shared platform, through the SDK, raw HTTP and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound, StaleResource
from stratus.iam.credentials import derive_key
from stratus.storage.blobstore import BLOB_NAMES, open_store
from stratus.storage.encryption import load_or_create_master_key
from stratus.testing import LocalPlatform

CliRunner = Callable[..., Any]  # the `cli` fixture: cli("buckets", "ls", ...) -> CliResult


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    """A fresh project, removed (with its buckets) afterwards."""
    name = unique("st")
    admin.projects.create(name)
    yield name
    for bucket in admin.buckets.list(project=name):
        admin.buckets.delete(bucket.metadata.name, project=name, force=True)
    admin.projects.delete(name)


@pytest.fixture
def bucket(admin: Client, project: str) -> str:
    name = unique("b")
    admin.buckets.create(name, project=project)
    return name


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    """Raw HTTP with the admin's key, for what the SDK hides (headers, pages)."""
    headers = {"authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as client:
        yield client


def objects_url(project: str, bucket: str, key: str | None = None) -> str:
    base = f"/api/v1/projects/{project}/buckets/{bucket}/objects"
    # Dots too: an HTTP client would otherwise drop '.' and '..' segments before sending.
    return base if key is None else f"{base}/{quote(key, safe='').replace('.', '%2E')}"


# --- buckets ---------------------------------------------------------------------------------


def test_bucket_crud(admin: Client, project: str) -> None:
    name = unique("crud")
    created = admin.buckets.create(name, project=project, description="raw files")
    assert created.metadata.name == name
    assert created.metadata.project == project
    assert created.spec.description == "raw files"
    assert created.status.objects == 0 and created.status.size_bytes == 0

    assert name in [b.metadata.name for b in admin.buckets.list(project=project)]
    got = admin.buckets.get(name, project=project)
    assert got.metadata.uid == created.metadata.uid

    updated = admin.buckets.update(name, project=project, description="curated")
    assert updated.spec.description == "curated"
    assert updated.metadata.resource_version > created.metadata.resource_version
    with pytest.raises(StaleResource):
        admin.buckets.update(
            name,
            project=project,
            description="stale",
            resource_version=created.metadata.resource_version,
        )

    admin.buckets.delete(name, project=project)
    with pytest.raises(NotFound, match=name):
        admin.buckets.get(name, project=project)
    assert name not in [b.metadata.name for b in admin.buckets.list(project=project)]


def test_duplicate_bucket_is_409(admin: Client, project: str, bucket: str) -> None:
    with pytest.raises(AlreadyExists, match="already exists") as info:
        admin.buckets.create(bucket, project=project)
    assert info.value.status == 409


def test_bucket_status_counts_live_objects(admin: Client, project: str, bucket: str) -> None:
    admin.buckets.upload(bucket, "a", b"12345", project=project)
    admin.buckets.upload(bucket, "a", b"123", project=project)
    admin.buckets.upload(bucket, "b", b"1", project=project)
    admin.buckets.upload(bucket, "c", b"1", project=project)
    admin.buckets.delete_object(bucket, "c", project=project)
    status = admin.buckets.get(bucket, project=project).status
    assert (status.objects, status.size_bytes) == (2, 4)


def test_delete_non_empty_bucket_needs_force(admin: Client, project: str, bucket: str) -> None:
    admin.buckets.upload(bucket, "data/x.bin", b"payload", project=project)
    with pytest.raises(Conflict, match="force") as info:
        admin.buckets.delete(bucket, project=project)
    assert info.value.status == 409

    # A bucket whose only object is deleted still holds versions: still refused.
    admin.buckets.delete_object(bucket, "data/x.bin", project=project)
    with pytest.raises(Conflict):
        admin.buckets.delete(bucket, project=project)

    admin.buckets.delete(bucket, project=project, force=True)
    with pytest.raises(NotFound):
        admin.buckets.get(bucket, project=project)


def test_labels_and_selector(admin: Client, project: str) -> None:
    raw = admin.buckets.create(unique("raw"), project=project, labels={"tier": "raw"})
    gold = admin.buckets.create(
        unique("gold"), project=project, labels={"tier": "gold", "team": "fraud"}
    )
    plain = admin.buckets.create(unique("plain"), project=project)
    assert raw.metadata.labels == {"tier": "raw"}

    def names(selector: str) -> set[str]:
        return {b.metadata.name for b in admin.buckets.list(project=project, selector=selector)}

    assert names("tier=raw") == {raw.metadata.name}
    assert names("tier in (raw,gold)") == {raw.metadata.name, gold.metadata.name}
    assert names("tier!=raw") == {gold.metadata.name, plain.metadata.name}
    assert names("team") == {gold.metadata.name}
    assert names("!tier") == {plain.metadata.name}

    admin.buckets.update(plain.metadata.name, project=project, labels={"tier": "raw"})
    assert names("tier=raw") == {raw.metadata.name, plain.metadata.name}

    with pytest.raises(InvalidInput, match="selector"):
        admin.buckets.list(project=project, selector="tier=raw,,x")


# --- objects: round trips and versions -------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 11, 3 * 1024 * 1024 + 512 * 1024], ids=["empty", "small", "3.5MiB"]
)
def test_put_get_round_trip(admin: Client, project: str, bucket: str, size: int) -> None:
    data = os.urandom(size)
    version = admin.buckets.upload(bucket, "blob.bin", data, project=project)
    assert version.size == size
    assert version.sha256 == hashlib.sha256(data).hexdigest()
    assert version.is_latest and not version.is_delete_marker
    assert admin.buckets.read(bucket, "blob.bin", project=project) == data


def test_upload_from_file_and_iterable(
    admin: Client, project: str, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    moved: list[int] = []
    from_file = admin.buckets.upload(bucket, "f", source, project=project, progress=moved.append)
    assert sum(moved) == len(data)
    from_iter = admin.buckets.upload(
        bucket, "g", (data[i : i + 100_000] for i in range(0, len(data), 100_000)), project=project
    )
    assert from_file.sha256 == from_iter.sha256 == hashlib.sha256(data).hexdigest()
    target = admin.buckets.download(bucket, "g", tmp_path / "out.bin", project=project)
    assert target.read_bytes() == data
    # Downloading into a folder names the file after the key.
    into_dir = admin.buckets.download(bucket, "f", tmp_path, project=project)
    assert into_dir == tmp_path / "f" and into_dir.read_bytes() == data


def test_head_headers(admin: Client, project: str, bucket: str, http: httpx.Client) -> None:
    data = b"hello, head" * 100
    version = admin.buckets.upload(
        bucket, "docs/readme.txt", data, project=project, content_type="text/plain"
    )
    head = admin.buckets.head_object(bucket, "docs/readme.txt", project=project)
    assert head["content-length"] == str(len(data))
    assert head["x-stratus-sha256"] == hashlib.sha256(data).hexdigest()
    assert head["x-stratus-version-id"] == version.version_id
    assert head["content-type"].startswith("text/plain")

    response = http.get(objects_url(project, bucket, "docs/readme.txt"))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["x-stratus-version-id"] == version.version_id
    assert response.headers["etag"] == f'"{version.sha256}"'

    missing = http.head(objects_url(project, bucket, "docs/nothing.txt"))
    assert missing.status_code == 404


def test_every_put_is_a_new_version(admin: Client, project: str, bucket: str) -> None:
    bodies = [b"first", b"second", b"third"]
    versions = [admin.buckets.upload(bucket, "k", body, project=project) for body in bodies]
    ids = [v.version_id for v in versions]
    assert len(set(ids)) == 3

    listed = admin.buckets.list_versions(bucket, project=project)
    assert [v.version_id for v in listed] == list(reversed(ids))  # newest first
    assert [v.is_latest for v in listed] == [True, False, False]
    assert [v.size for v in listed] == [5, 6, 5]

    # Every older version stays readable by id; the latest is the default.
    for version, body in zip(versions, bodies, strict=True):
        got = admin.buckets.read(bucket, "k", version_id=version.version_id, project=project)
        assert got == body
    assert admin.buckets.read(bucket, "k", project=project) == b"third"
    head = admin.buckets.head_object(bucket, "k", version_id=ids[0], project=project)
    assert head["x-stratus-version-id"] == ids[0]

    # The same content twice is still two versions.
    again = admin.buckets.upload(bucket, "k", b"third", project=project)
    assert again.version_id not in ids
    assert len(admin.buckets.list_versions(bucket, "k", project=project)) == 4


def test_list_versions_orders_keys_and_filters_by_prefix(
    admin: Client, project: str, bucket: str
) -> None:
    for key in ["b/2", "a/1", "b/2", "a/1", "c"]:
        admin.buckets.upload(bucket, key, key.encode(), project=project)
    listed = admin.buckets.list_versions(bucket, project=project)
    assert [v.key for v in listed] == ["a/1", "a/1", "b/2", "b/2", "c"]
    assert [v.key for v in admin.buckets.list_versions(bucket, "b/", project=project)] == [
        "b/2",
        "b/2",
    ]


def test_delete_adds_a_marker_and_keeps_versions(
    admin: Client, project: str, bucket: str, http: httpx.Client
) -> None:
    v1 = admin.buckets.upload(bucket, "report.csv", b"a,b\n1,2\n", project=project)
    marker = admin.buckets.delete_object(bucket, "report.csv", project=project)
    assert marker.is_delete_marker and marker.is_latest and marker.sha256 is None
    assert marker.version_id != v1.version_id

    with pytest.raises(NotFound, match="report.csv"):
        admin.buckets.read(bucket, "report.csv", project=project)
    assert http.get(objects_url(project, bucket, "report.csv")).status_code == 404
    assert admin.buckets.list_objects(bucket, project=project).objects == []

    # The old version is still there and readable by id.
    old = admin.buckets.read(bucket, "report.csv", version_id=v1.version_id, project=project)
    assert old == b"a,b\n1,2\n"
    listed = admin.buckets.list_versions(bucket, project=project)
    assert [(v.version_id, v.is_delete_marker, v.is_latest) for v in listed] == [
        (marker.version_id, True, True),
        (v1.version_id, False, False),
    ]
    # Reading the marker by id is a 404, not content.
    with pytest.raises(NotFound, match="delete marker"):
        admin.buckets.read(bucket, "report.csv", version_id=marker.version_id, project=project)
    # Deleting a deleted object again is a 404.
    with pytest.raises(NotFound):
        admin.buckets.delete_object(bucket, "report.csv", project=project)

    # A new put brings it back.
    admin.buckets.upload(bucket, "report.csv", b"new", project=project)
    assert admin.buckets.read(bucket, "report.csv", project=project) == b"new"


def test_erase_a_version(admin: Client, project: str, bucket: str) -> None:
    v1, v2, v3 = (
        admin.buckets.upload(bucket, "model.pt", body, project=project)
        for body in (b"one", b"two", b"three")
    )
    erased = admin.buckets.delete_object(
        bucket, "model.pt", version_id=v3.version_id, project=project
    )
    assert erased.version_id == v3.version_id and erased.is_latest

    # The current version repoints to the newest remaining one.
    assert admin.buckets.read(bucket, "model.pt", project=project) == b"two"
    head = admin.buckets.head_object(bucket, "model.pt", project=project)
    assert head["x-stratus-version-id"] == v2.version_id
    with pytest.raises(NotFound, match=v3.version_id):
        admin.buckets.read(bucket, "model.pt", version_id=v3.version_id, project=project)
    listed = admin.buckets.list_versions(bucket, project=project)
    assert [(v.version_id, v.is_latest) for v in listed] == [
        (v2.version_id, True),
        (v1.version_id, False),
    ]
    [info] = admin.buckets.list_objects(bucket, project=project).objects
    assert (info.version_id, info.size) == (v2.version_id, 3)

    # Erasing an older version leaves the current one alone.
    admin.buckets.delete_object(bucket, "model.pt", version_id=v1.version_id, project=project)
    assert admin.buckets.read(bucket, "model.pt", project=project) == b"two"

    # Erasing a delete marker brings the object back.
    marker = admin.buckets.delete_object(bucket, "model.pt", project=project)
    admin.buckets.delete_object(bucket, "model.pt", version_id=marker.version_id, project=project)
    assert admin.buckets.read(bucket, "model.pt", project=project) == b"two"

    # Erasing the last version removes the object entirely.
    admin.buckets.delete_object(bucket, "model.pt", version_id=v2.version_id, project=project)
    assert admin.buckets.list_versions(bucket, project=project) == []
    with pytest.raises(NotFound):
        admin.buckets.head_object(bucket, "model.pt", project=project)
    with pytest.raises(NotFound):
        admin.buckets.delete_object(bucket, "model.pt", version_id=v2.version_id, project=project)


def test_version_of_another_key_is_not_found(admin: Client, project: str, bucket: str) -> None:
    other = admin.buckets.upload(bucket, "one", b"1", project=project)
    admin.buckets.upload(bucket, "two", b"2", project=project)
    with pytest.raises(NotFound):
        admin.buckets.read(bucket, "two", version_id=other.version_id, project=project)
    with pytest.raises(NotFound):
        admin.buckets.delete_object(bucket, "two", version_id=other.version_id, project=project)
    assert admin.buckets.read(bucket, "one", project=project) == b"1"


def test_objects_in_a_missing_bucket(admin: Client, project: str) -> None:
    with pytest.raises(NotFound, match="nope"):
        admin.buckets.upload("nope", "k", b"x", project=project)
    with pytest.raises(NotFound, match="nope"):
        admin.buckets.read("nope", "k", project=project)
    with pytest.raises(NotFound, match="nope"):
        admin.buckets.list_objects("nope", project=project)


# --- listings --------------------------------------------------------------------------------


def test_list_objects_with_prefix_and_delimiter(admin: Client, project: str, bucket: str) -> None:
    keys = [
        "README",
        "data/train/part-0",
        "data/train/part-1",
        "data/test/part-0",
        "data/labels.csv",
        "models/v1/model.pt",
        "models.txt",
    ]
    for key in keys:
        admin.buckets.upload(bucket, key, key.encode(), project=project)

    flat = admin.buckets.list_objects(bucket, project=project)
    assert [o.key for o in flat.objects] == sorted(keys)
    assert flat.prefixes == []

    top = admin.buckets.list_objects(bucket, delimiter="/", project=project)
    assert [o.key for o in top.objects] == ["README", "models.txt"]
    assert top.prefixes == ["data/", "models/"]

    data = admin.buckets.list_objects(bucket, "data/", delimiter="/", project=project)
    assert [o.key for o in data.objects] == ["data/labels.csv"]
    assert data.prefixes == ["data/test/", "data/train/"]

    train = admin.buckets.list_objects(bucket, "data/train/", project=project)
    assert [o.key for o in train.objects] == ["data/train/part-0", "data/train/part-1"]
    info = train.objects[0]
    assert info.size == len(b"data/train/part-0")
    assert info.sha256 == hashlib.sha256(b"data/train/part-0").hexdigest()

    partial = admin.buckets.list_objects(bucket, "model", delimiter="/", project=project)
    assert [o.key for o in partial.objects] == ["models.txt"]
    assert partial.prefixes == ["models/"]

    # A prefix with LIKE wildcards is literal.
    assert admin.buckets.list_objects(bucket, "data%", project=project).objects == []
    assert admin.buckets.list_objects(bucket, "data_", project=project).objects == []


ODD_KEYS = [
    "plain",
    "with space.txt",
    "dir with space/inner file",
    "ünïcödé/データ.csv",
    "emoji-🚀",
    "percent%20literal",
    "100%",
    "plus+sign",
    "hash#frag",
    "question?mark=1&b=2",
    "semi;colon,comma",
    "tilde~and'quote\"",
    "a/b/c/d/e",
    "a/b/c2",
    "a-",
    "a.b",
    "z",
]


def test_pagination_returns_every_key_once(
    admin: Client, project: str, bucket: str, http: httpx.Client
) -> None:
    for key in ODD_KEYS:
        admin.buckets.upload(bucket, key, key.encode(), project=project)
    # One deleted key must not appear on any page.
    admin.buckets.upload(bucket, "deleted", b"gone", project=project)
    admin.buckets.delete_object(bucket, "deleted", project=project)

    def pages(**params: str) -> tuple[list[str], list[str], int]:
        keys: list[str] = []
        prefixes: list[str] = []
        query: dict[str, str] = {"limit": "2", **params}
        count = 0
        while True:
            response = http.get(objects_url(project, bucket), params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            count += 1
            assert len(page["objects"]) + len(page["prefixes"]) <= 2
            keys += [o["key"] for o in page["objects"]]
            prefixes += page["prefixes"]
            if not page["next_page_token"]:
                return keys, prefixes, count
            query["page_token"] = page["next_page_token"]
            assert count < 100, "pagination does not end"

    keys, prefixes, count = pages()
    assert keys == sorted(ODD_KEYS, key=lambda k: k.encode())
    assert prefixes == []
    assert count == (len(ODD_KEYS) + 1) // 2

    keys, prefixes, _ = pages(delimiter="/")
    top = [k for k in ODD_KEYS if "/" not in k]
    rolled = {k.split("/", 1)[0] + "/" for k in ODD_KEYS if "/" in k}
    assert sorted(keys) == sorted(top) and len(keys) == len(top)
    assert sorted(prefixes) == sorted(rolled) and len(prefixes) == len(rolled)

    keys, prefixes, _ = pages(prefix="a/b/", delimiter="/")
    assert keys == ["a/b/c2"]
    assert prefixes == ["a/b/c/"]

    # The SDK follows the pages itself; every key reads back by its exact name.
    listing = admin.buckets.list_objects(bucket, project=project)
    assert sorted(o.key for o in listing.objects) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert admin.buckets.read(bucket, key, project=project) == key.encode()


def test_bad_page_token_and_limit(project: str, bucket: str, http: httpx.Client) -> None:
    response = http.get(objects_url(project, bucket), params={"page_token": "!!not-a-token"})
    assert response.status_code == 400
    assert "page_token" in response.json()["detail"]
    assert http.get(objects_url(project, bucket), params={"limit": "0"}).status_code == 422
    bad_delimiter = http.get(objects_url(project, bucket), params={"delimiter": "//"})
    assert bad_delimiter.status_code == 422


# --- key validation --------------------------------------------------------------------------

BAD_KEYS = [
    pytest.param("../x", "'..'", id="dotdot"),
    pytest.param("a/../../x", "'..'", id="inner-dotdot"),
    pytest.param("../../other/objects/k", "'..'", id="escape-to-another-bucket"),
    pytest.param("/abs", "absolute", id="absolute"),
    pytest.param("a//b", "empty", id="empty-segment"),
    pytest.param("a/./b", "'.'", id="dot"),
    pytest.param(".", "'.'", id="only-dot"),
    pytest.param("a\x01b", "control character", id="control"),
    pytest.param("a\x7fb", "control character", id="delete-char"),
    pytest.param("a\\b", "backslash", id="backslash"),
    pytest.param("k" * 1025, "longer than 1024 bytes", id="too-long"),
    pytest.param("é" * 513, "longer than 1024 bytes", id="too-long-utf8"),
    pytest.param("dir/", "end with '/'", id="trailing-slash"),
]


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS)
def test_bad_keys_are_refused_over_http(
    project: str, bucket: str, http: httpx.Client, key: str, problem: str
) -> None:
    url = objects_url(project, bucket, key)
    put = http.put(url, content=b"x")
    assert 400 <= put.status_code < 500, put.text
    assert put.status_code == 400
    assert put.headers["content-type"].startswith("application/problem+json")
    assert problem in put.json()["detail"]
    for method in ("GET", "DELETE"):
        response = http.request(method, url)
        assert response.status_code == 400, (method, response.text)
        assert problem in response.json()["detail"]
    # Nothing was created.
    versions = http.get(f"/api/v1/projects/{project}/buckets/{bucket}/versions")
    assert versions.json()["items"] == []


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS)
def test_bad_keys_are_refused_through_the_sdk(
    admin: Client, project: str, bucket: str, key: str, problem: str
) -> None:
    """The SDK must send the key as is: never let the URL layer rewrite '..' or '.'."""
    with pytest.raises(InvalidInput) as info:
        admin.buckets.upload(bucket, key, b"x", project=project)
    assert problem in info.value.detail
    assert admin.buckets.list_versions(bucket, project=project) == []


@pytest.mark.parametrize("key", ["a\nb", "line\r\nbreak"], ids=["lf", "crlf"])
def test_keys_with_line_breaks_are_refused(
    admin: Client, project: str, bucket: str, http: httpx.Client, key: str
) -> None:
    # The router's path pattern does not cross a line break, so these never reach the key
    # check: the answer is a 4xx "no route" rather than one naming the control character.
    response = http.put(objects_url(project, bucket, key), content=b"x")
    assert 400 <= response.status_code < 500
    with pytest.raises((InvalidInput, NotFound)):
        admin.buckets.upload(bucket, key, b"x", project=project)
    assert admin.buckets.list_versions(bucket, project=project) == []


def test_longest_key_is_accepted(admin: Client, project: str, bucket: str) -> None:
    key = "k" * 1024
    admin.buckets.upload(bucket, key, b"x", project=project)
    assert admin.buckets.read(bucket, key, project=project) == b"x"


def test_bad_prefix_is_refused(project: str, bucket: str, http: httpx.Client) -> None:
    response = http.get(objects_url(project, bucket), params={"prefix": "a\x01"})
    assert response.status_code == 400
    assert "control character" in response.json()["detail"]


# --- integrity on upload ---------------------------------------------------------------------


def test_wrong_declared_sha256_is_refused(
    admin: Client, platform: LocalPlatform, project: str, bucket: str, http: httpx.Client
) -> None:
    data = os.urandom(64 * 1024)
    actual = hashlib.sha256(data).hexdigest()
    declared = hashlib.sha256(b"something else").hexdigest()
    response = http.put(
        objects_url(project, bucket, "checked.bin"),
        content=data,
        headers={"x-stratus-sha256": declared},
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert actual in detail and declared in detail
    assert admin.buckets.list_versions(bucket, project=project) == []
    with pytest.raises(NotFound):
        admin.buckets.head_object(bucket, "checked.bin", project=project)
    # The refused bytes are not kept in the store either.
    uid = admin.projects.get(project).metadata.uid
    master = load_or_create_master_key(None, platform.home / "master.key")
    store = open_store(str(platform.home / "store"), name_key=derive_key(master, BLOB_NAMES))
    assert not store.exists(uid, actual)

    malformed = http.put(
        objects_url(project, bucket, "checked.bin"),
        content=data,
        headers={"x-stratus-sha256": "not-hex"},
    )
    assert malformed.status_code == 400
    assert "X-Stratus-Sha256" in malformed.json()["detail"]

    right = http.put(
        objects_url(project, bucket, "checked.bin"),
        content=data,
        headers={"x-stratus-sha256": actual.upper()},
    )
    assert right.status_code == 201, right.text
    assert right.json()["sha256"] == actual
    assert store.exists(uid, actual)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_bucket_and_object_flow(
    cli: CliRunner, admin: Client, project: str, tmp_path: Path
) -> None:
    name = unique("cli")
    created = cli("buckets", "create", name, "-p", project, "-o", "json")
    assert created.code == 0, created.stderr
    assert json.loads(created.stdout)["metadata"]["name"] == name

    listed = cli("buckets", "list", "-p", project, "-o", "json")
    assert listed.code == 0, listed.stderr
    assert name in [b["metadata"]["name"] for b in json.loads(listed.stdout)]

    table = cli("buckets", "list", "-p", project)
    assert table.code == 0 and name in table.stdout and "NAME" in table.stdout

    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_bytes(b"id,label\n1,cat\n")
    second.write_bytes(b"id,label\n1,dog\n2,cat\n")
    put1 = cli(
        "buckets", "put", name, str(first), "data/train.csv", "-p", project, "-q", "-o", "json"
    )
    assert put1.code == 0, put1.stderr
    v1 = json.loads(put1.stdout)
    assert v1["key"] == "data/train.csv" and v1["size"] == first.stat().st_size
    put2 = cli(
        "buckets", "put", name, str(second), "data/train.csv", "-p", project, "-q", "-o", "json"
    )
    assert put2.code == 0, put2.stderr
    v2 = json.loads(put2.stdout)
    # Without a KEY, the file name is the key.
    put3 = cli("buckets", "put", name, str(first), "-p", project, "-q", "-o", "json")
    assert put3.code == 0, put3.stderr
    assert json.loads(put3.stdout)["key"] == "first.csv"

    ls = cli("buckets", "ls", name, "-p", project, "-o", "json")
    assert ls.code == 0, ls.stderr
    listing = json.loads(ls.stdout)
    assert [o["key"] for o in listing["objects"]] == ["first.csv"]
    assert listing["prefixes"] == ["data/"]
    recursive = cli("buckets", "ls", name, "data/", "-r", "-p", project, "-o", "json")
    assert [o["key"] for o in json.loads(recursive.stdout)["objects"]] == ["data/train.csv"]
    ls_table = cli("buckets", "ls", name, "-p", project)
    assert ls_table.code == 0 and "data/" in ls_table.stdout and "first.csv" in ls_table.stdout

    versions = cli("buckets", "versions", name, "data/", "-p", project, "-o", "json")
    assert versions.code == 0, versions.stderr
    found = json.loads(versions.stdout)
    assert [v["version_id"] for v in found] == [v2["version_id"], v1["version_id"]]
    assert [v["is_latest"] for v in found] == [True, False]

    latest = tmp_path / "latest.csv"
    got = cli("buckets", "get", name, "data/train.csv", str(latest), "-p", project)
    assert got.code == 0, got.stderr
    assert latest.read_bytes() == second.read_bytes()
    assert v2["version_id"] in got.stderr

    older = tmp_path / "older.csv"
    got_old = cli(
        "buckets",
        "get",
        name,
        "data/train.csv",
        str(older),
        "--version",
        v1["version_id"],
        "-p",
        project,
        "-q",
    )
    assert got_old.code == 0, got_old.stderr
    assert older.read_bytes() == first.read_bytes()

    to_stdout = cli("buckets", "get", name, "data/train.csv", "-", "-p", project)
    assert to_stdout.code == 0 and to_stdout.stdout == second.read_text()

    rm = cli("buckets", "rm", name, "data/train.csv", "-p", project)
    assert rm.code == 0, rm.stderr
    assert "deleted data/train.csv" in rm.stdout
    with pytest.raises(NotFound):
        admin.buckets.read(name, "data/train.csv", project=project)
    erase = cli(
        "buckets", "rm", name, "data/train.csv", "--version", v1["version_id"], "-p", project
    )
    assert erase.code == 0, erase.stderr
    assert v1["version_id"] in erase.stdout
    remaining = json.loads(cli("buckets", "versions", name, "-p", project, "-o", "json").stdout)
    assert v1["version_id"] not in [v["version_id"] for v in remaining]

    refused = cli("buckets", "delete", name, "-p", project)
    assert refused.code == 1
    assert "error:" in refused.stderr and "force" in refused.stderr
    deleted = cli("buckets", "delete", name, "-p", project, "--force")
    assert deleted.code == 0, deleted.stderr
    assert f"deleted bucket {name}" in deleted.stdout
    with pytest.raises(NotFound):
        admin.buckets.get(name, project=project)


def test_cli_put_missing_file_is_usage_error(
    cli: CliRunner, project: str, bucket: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nothing-here.bin"
    result = cli("buckets", "put", bucket, str(missing), "-p", project)
    assert result.code == 2
    # The message sits in a box that may wrap it: compare without the frame and spaces.
    text = "".join(ch for ch in result.stderr if ch not in "│ \n")
    assert "nothing-here.bin" in text and "isnotafile" in text
    assert result.stdout == ""


def test_cli_failure_prints_one_error_line(cli: CliRunner, project: str) -> None:
    missing = unique("missing-bucket-with-a-rather-long-name-to-test-wrapping")
    result = cli("buckets", "ls", missing, "-p", project)
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert missing in lines[0] and "not found" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""

    get = cli("buckets", "get", missing, "k", "-p", project)
    assert get.code == 1
    assert get.stderr.strip().startswith("error:") and len(get.stderr.strip().splitlines()) == 1
