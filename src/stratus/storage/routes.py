"""Storage's HTTP surface: buckets, and objects streamed in and out without buffering."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Protocol, TypeVar, cast

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect

from stratus.core.errors import InvalidInput
from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Access, ListAccess, ListScope, ProjectAccess
from stratus.iam.parameters import Limit, PageToken, Selector
from stratus.iam.roles import Permission
from stratus.storage import schemas as s
from stratus.storage.encryption import CHUNK_BYTES
from stratus.storage.service import StorageService


class _AnyPath(PathConvertor):
    """Like `path`, but also matches line breaks, so such keys reach validation (a 400)."""

    regex = r"[\s\S]*"


ANY_PATH = "anypath"  # other services' routes use it too: importing this name registers it
register_url_convertor(ANY_PATH, _AnyPath())

router = APIRouter(prefix="/api/v1/projects/{project}/buckets", tags=["storage"])

VersionId = Annotated[str | None, Query(max_length=40, description="a version (default: latest)")]
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# type/subtype (RFC 9110 tokens), then any parameters: what GET serves back as Content-Type.
_MEDIA_TYPE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+/[-!#$%&'*+.^_`|~0-9A-Za-z]+(\s*;.*)?")
MAX_CONTENT_TYPE = 255


def _storage(request: Request) -> StorageService:
    return cast(StorageService, request.app.state.storage)


@router.post("", name="buckets.create", status_code=201, response_model=s.BucketRead)
def create_bucket(
    request: Request,
    body: s.BucketCreate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.BucketRead:
    return _storage(request).create_bucket(access.project, body)


@router.get("", name="buckets.list", response_model=Page[s.BucketRead])
def list_buckets(
    request: Request,
    access: ListScope = ListAccess(Permission.RESOURCE_READ),
    selector: Selector = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.BucketRead]:
    items, token = _storage(request).list_buckets(access.project, selector, limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get("/{bucket}", name="buckets.get", response_model=s.BucketRead)
def get_bucket(
    request: Request, bucket: str, access: ProjectAccess = Access(Permission.RESOURCE_READ)
) -> s.BucketRead:
    return _storage(request).get_bucket(access.project, bucket)


@router.patch("/{bucket}", name="buckets.update", response_model=s.BucketRead)
def update_bucket(
    request: Request,
    bucket: str,
    body: s.BucketUpdate,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.BucketRead:
    return _storage(request).update_bucket(access.project, bucket, body)


@router.delete("/{bucket}", name="buckets.delete", status_code=204)
def delete_bucket(
    request: Request,
    bucket: str,
    force: bool = False,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> Response:
    """Delete a bucket; `force=true` also deletes every object and version in it."""
    _storage(request).delete_bucket(access.project, bucket, force=force)
    return Response(status_code=204)


@router.get("/{bucket}/objects", name="objects.list", response_model=s.ObjectListing)
def list_objects(
    request: Request,
    bucket: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    prefix: Annotated[str, Query(max_length=1024)] = "",
    delimiter: Annotated[str | None, Query(max_length=1)] = None,
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> s.ObjectListing:
    """Latest versions of live objects; with a delimiter, keys below it roll up into prefixes."""
    return _storage(request).list_objects(
        access.project, bucket, prefix, delimiter or None, limit, page_token
    )


@router.get("/{bucket}/versions", name="objects.versions", response_model=Page[s.ObjectVersionRead])
def list_versions(
    request: Request,
    bucket: str,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
    prefix: Annotated[str, Query(max_length=1024)] = "",
    limit: Limit = DEFAULT_LIMIT,
    page_token: PageToken = None,
) -> Page[s.ObjectVersionRead]:
    items, token = _storage(request).list_versions(
        access.project, bucket, prefix, limit, page_token
    )
    return Page(items=items, next_page_token=token)


_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# Objects are served with the Content-Type they were uploaded with.
_OBJECT = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


@router.put(
    "/{bucket}/objects/{key:anypath}",
    name="objects.put",
    status_code=201,
    response_model=s.ObjectVersionRead,
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
)
async def put_object(
    request: Request,
    bucket: str,
    key: str,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ObjectVersionRead:
    """Upload a new version of an object; the body is streamed, never held in memory.

    Send `X-Stratus-Sha256` to have the server refuse bytes changed in transit.
    """
    expected = request.headers.get("x-stratus-sha256")
    if expected is not None and not _SHA256.match(expected):
        raise InvalidInput("X-Stratus-Sha256 must be 64 hexadecimal characters")
    content_type = request.headers.get("content-type")
    if content_type and (
        len(content_type) > MAX_CONTENT_TYPE or not _MEDIA_TYPE.fullmatch(content_type)
    ):
        raise InvalidInput(
            f"Content-Type {content_type[:80]!r} is not a media type such as "
            f"'application/octet-stream' of at most {MAX_CONTENT_TYPE} characters"
        )
    storage = _storage(request)
    upload = await to_thread.run_sync(storage.begin_put, access.project, bucket, key)
    return await receive_body(
        request,
        upload,
        lambda: storage.finish_put(
            upload,
            actor=access.principal.subject,
            content_type=content_type,
            expected_sha256=expected,
        ),
    )


class Receiving(Protocol):
    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


T = TypeVar("T")

# Set in the request's scope by `receive_body`: the API's admission middleware caps every other
# body at server.max_request_bytes, whatever its content type; an upload streams to a
# temporary file, so its size never sits in memory.
STREAMED_BODY = "stratus.streamed_body"


async def receive_body(request: Request, upload: Receiving, finish: Callable[[], T]) -> T:
    """Stream a request body into `upload` (in CHUNK_BYTES pieces, off the event loop), then
    `finish` it; any failure, a client that goes away included, aborts the upload."""
    request.scope[STREAMED_BODY] = True
    try:
        buffer = bytearray()
        async for piece in request.stream():
            buffer += piece
            if len(buffer) >= CHUNK_BYTES:
                chunk, buffer = bytes(buffer), bytearray()
                await to_thread.run_sync(upload.write, chunk)
        if buffer:
            await to_thread.run_sync(upload.write, bytes(buffer))
        return await to_thread.run_sync(finish)
    except ClientDisconnect:
        upload.abort()
        raise InvalidInput("the client disconnected before the upload finished") from None
    except BaseException:
        upload.abort()
        raise


def _object_headers(version: s.ObjectVersionRead) -> dict[str, str]:
    return {
        "content-length": str(version.size),
        "etag": f'"{version.sha256}"',
        "x-stratus-sha256": version.sha256 or "",
        "x-stratus-version-id": version.version_id,
        "last-modified": version.created_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }


@router.get(
    "/{bucket}/objects/{key:anypath}",
    name="objects.get",
    response_class=StreamingResponse,
    responses={200: {"content": _OBJECT, "description": "the object's bytes"}},
)
def get_object(
    request: Request,
    bucket: str,
    key: str,
    version_id: VersionId = None,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> StreamingResponse:
    """Download an object (the latest version, or `version_id`); bytes are verified as read."""
    version, chunks = _storage(request).open_object(access.project, bucket, key, version_id)
    return StreamingResponse(
        chunks, media_type=version.content_type, headers=_object_headers(version)
    )


@router.head(
    "/{bucket}/objects/{key:anypath}",
    name="objects.head",
    response_class=Response,
    responses={200: {"content": _OBJECT, "description": "the object's headers, no body"}},
)
def head_object(
    request: Request,
    bucket: str,
    key: str,
    version_id: VersionId = None,
    access: ProjectAccess = Access(Permission.RESOURCE_READ),
) -> Response:
    version, _ = _storage(request).head_object(access.project, bucket, key, version_id)
    return Response(headers=_object_headers(version), media_type=version.content_type)


@router.delete(
    "/{bucket}/objects/{key:anypath}", name="objects.delete", response_model=s.ObjectVersionRead
)
def delete_object(
    request: Request,
    bucket: str,
    key: str,
    version_id: VersionId = None,
    access: ProjectAccess = Access(Permission.RESOURCE_WRITE),
) -> s.ObjectVersionRead:
    """Without `version_id`: add a delete marker (versions stay). With it: erase that version."""
    return _storage(request).delete_object(
        access.project, bucket, key, version_id, access.principal.subject
    )
