"""Declared files of a pending manifest (a model or dataset version) streaming into
content-addressed blobs. The owning service finds its version row; these helpers do what is
the same for every manifest `[{path, sha256, size, stored}]`: start an upload of a declared
file, and record a finished one (size checked, blob reference taken once)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo, BlobWriter


class FileUpload:
    def __init__(
        self, *, project_uid: str, version_uid: str, path: str, sha256: str, writer: BlobWriter
    ) -> None:
        self.project_uid = project_uid
        self.version_uid = version_uid
        self.path = path
        self.sha256 = sha256
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def abort(self) -> None:
        self.writer.abort()

    @classmethod
    def start(
        cls, blobs: Blobs, project_uid: str, version_uid: str, entry: dict[str, Any]
    ) -> FileUpload:
        """Begin streaming a declared file (outside any transaction: the writer opens one)."""
        return cls(
            project_uid=project_uid,
            version_uid=version_uid,
            path=str(entry["path"]),
            sha256=str(entry["sha256"]),
            writer=blobs.writer(project_uid),
        )


def declared_file(version: Any, path: str, label: str) -> dict[str, Any]:
    """The manifest entry of the file `path` that the pending `version` row declares.

    Args:
        version: a version row with `state` and the manifest `files`.
        path: the declared file.
        label: the version as users name it (`churn:3`), for errors.
    """
    if version.state != "pending":
        raise Conflict(f"{label} is committed: its files cannot change")
    entry: dict[str, Any] | None = next((f for f in version.files if f["path"] == path), None)
    if entry is None:
        raise NotFound(f"{label} declares no file {path!r}")
    return entry


def record_upload(
    blobs: Blobs, session: Session, version: Any | None, upload: FileUpload, info: BlobInfo
) -> dict[str, Any]:
    """Mark a finished upload stored in its (locked) version row; returns its manifest entry."""
    if version is None or version.state != "pending":
        raise Conflict("the version was committed or deleted during the upload")
    entry: dict[str, Any] = next(f for f in version.files if f["path"] == upload.path)
    if entry["size"] != info.size:
        raise InvalidInput(
            f"{upload.path!r} has {info.size} bytes, not {entry['size']} as declared"
        )
    if not entry["stored"]:
        blobs.acquire(session, upload.project_uid, info)
        entry["stored"] = True
        flag_modified(version, "files")
    return entry
