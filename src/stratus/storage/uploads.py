"""One declared file of a pending manifest (a model or dataset version) streaming into a
content-addressed blob; the owning service checks it against the declaration on commit."""

from __future__ import annotations

from stratus.storage.blobstore import BlobWriter


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
