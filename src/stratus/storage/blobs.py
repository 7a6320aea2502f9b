"""Content-addressed blobs for every service: write once, count references, sweep the rest.

A service streams bytes through `Blobs.writer()`, then, in its own transaction, calls
`acquire` for the version row that refers to the blob; deleting that row calls `release`.
Files are removed only by `sweep`, after a grace period, so a concurrent upload of the same
content never loses its file. Datasets and model artifacts use these helpers too.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.demand import Admission, Demand, Resource
from stratus.core.errors import DataCorrupted, InvalidInput, TemporaryError
from stratus.storage.blobstore import BlobInfo, BlobStore, BlobWriter
from stratus.storage.grants import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    ArtifactGrant,
    GrantedFile,
)
from stratus.storage.keyring import Keyring
from stratus.storage.tables import BlobRow, DataKeyRow

log = logging.getLogger(__name__)

# Written to the store once every blob under a legacy (SHA-256) name has its keyed name.
KEYED_NAMES_MARKER = "meta/keyed-blob-names"


@dataclass(frozen=True)
class SweepReport:
    temp_files: int
    released_blobs: int


class Blobs:
    def __init__(self, db: Database, store: BlobStore, keyring: Keyring, encrypt: bool) -> None:
        self.db = db
        self.admission = Admission()  # the stored-bytes quota, registered above (billing)
        self.store = store
        self.keyring = keyring
        self.encrypt = encrypt

    def writer(self, project_uid: str) -> BlobWriter:
        if self.encrypt:
            key_id, key = self.keyring.current(project_uid)
            return self.store.open_writer(project_uid, key_id, key)
        return self.store.open_writer(project_uid, None, None)

    def write(self, project_uid: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Store a stream of bytes; the caller must `acquire` it in its own transaction."""
        with self.writer(project_uid) as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()

    def acquire(
        self, session: Session, project_uid: str, info: BlobInfo, *, charged: bool = True
    ) -> None:
        """Count one more reference to a blob just written (inside the caller's transaction).

        Bytes the project did not hold yet are admitted against its stored-bytes quota when
        `charged` (what a user uploads); the platform's own records (job logs, checkpoints,
        captured requests) are not refused."""
        if charged:
            held = session.scalar(
                select(BlobRow.refcount).where(
                    BlobRow.project_uid == project_uid, BlobRow.sha256 == info.sha256
                )
            )
            if not held:
                demand = Demand("", project_uid, "upload", {Resource.stored_bytes: info.size})
                self._acquire(session, project_uid, info)
                session.flush()
                try:
                    self.admission.check(session, demand)
                except Exception:  # refused: the bytes go with the transaction
                    self.db.after_transaction(lambda _: self._drop_unheld(project_uid, info))
                    raise
                return
        self._acquire(session, project_uid, info)

    def _drop_unheld(self, project_uid: str, info: BlobInfo) -> None:
        """Delete a written blob that no row holds (an upload refused after its bytes were
        stored)."""
        with self.db.transaction() as session:
            row = session.scalar(
                select(BlobRow).where(
                    BlobRow.project_uid == project_uid, BlobRow.sha256 == info.sha256
                )
            )
        if row is None:
            self.store.delete(project_uid, info.sha256)

    def held_bytes(self, session: Session, project_uid: str) -> dict[Resource, float]:
        """The bytes the project keeps (each blob once, however many refer to it)."""
        total = session.scalar(
            select(func.coalesce(func.sum(BlobRow.size), 0)).where(
                BlobRow.project_uid == project_uid, BlobRow.refcount > 0
            )
        )
        return {Resource.stored_bytes: float(total or 0)}

    def _acquire(self, session: Session, project_uid: str, info: BlobInfo) -> None:
        stmt = (
            select(BlobRow)
            .where(BlobRow.project_uid == project_uid, BlobRow.sha256 == info.sha256)
            .with_for_update()
        )
        row = session.scalar(stmt)
        if row is None:
            try:
                with session.begin_nested():
                    session.add(
                        BlobRow(
                            project_uid=project_uid, sha256=info.sha256, size=info.size, refcount=1
                        )
                    )
                    session.flush()
                return
            except IntegrityError:
                # A concurrent upload of the same content added the row first: count on it.
                row = session.scalar(stmt)
                if row is None:
                    raise
        row.refcount += 1
        row.released_at = None
        if not self.store.exists(project_uid, info.sha256):
            raise TemporaryError("the blob was swept while being written: retry the upload")

    def release(self, session: Session, project_uid: str, sha256: str) -> None:
        row = session.scalar(
            select(BlobRow)
            .where(BlobRow.project_uid == project_uid, BlobRow.sha256 == sha256)
            .with_for_update()
        )
        if row is None:
            return
        row.refcount = max(0, row.refcount - 1)
        if row.refcount == 0:
            row.released_at = utcnow()

    def known(self, session: Session, project_uid: str, digests: Iterable[str]) -> set[str]:
        """Which of these blobs the project already stores (so a push can skip uploading them),
        read in the caller's transaction."""
        wanted = sorted(set(digests))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            rows = session.scalars(
                select(BlobRow.sha256).where(
                    BlobRow.project_uid == project_uid,
                    BlobRow.sha256.in_(wanted[start : start + 500]),
                )
            )
            found.update(rows)
        return found

    def open(self, project_uid: str, sha256: str) -> Iterator[bytes]:
        """Verified plaintext chunks; the first is read (and checked) before this returns."""
        return self.store.open_read(project_uid, sha256, self.keyring.get)

    def grant(
        self,
        project_uid: str,
        files: Iterable[tuple[str, str, int]],
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> ArtifactGrant:
        """A grant that lets a worker fetch these files `(path, sha256, size)` on its own
        (`grants.fetch`) for `ttl_seconds`: a URL per blob that reads that blob only, and the
        project's data keys its blobs' headers name (only those). Reads each header from the
        store (one small read per blob), so call it outside any transaction."""
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"a grant lasts 1 to {MAX_TTL_SECONDS} seconds, not {ttl_seconds}")
        entries = list(files)
        expires_at = utcnow() + timedelta(seconds=ttl_seconds)  # before any URL is signed
        located = self.store.locate(project_uid, [sha for _, sha, _ in entries])
        key_ids = sorted({blob.key_id for blob in located.values() if blob.key_id is not None})
        keys = self._project_keys(project_uid, key_ids)
        urls = {
            sha: self.store.presigned_url(blob.path, ttl_seconds) for sha, blob in located.items()
        }
        return ArtifactGrant(
            expires_at=expires_at,
            files=[
                GrantedFile(
                    path=path, sha256=sha, size=size, url=urls[sha], key_id=located[sha].key_id
                )
                for path, sha, size in entries
            ],
            keys={key_id: base64.b64encode(key).decode("ascii") for key_id, key in keys.items()},
        )

    def _project_keys(self, project_uid: str, key_ids: Sequence[str]) -> dict[str, bytes]:
        """The data keys by id, refused unless each is the project's own: a blob header that
        names another project's key (a store someone wrote into) must not hand that key out."""
        if not key_ids:
            return {}
        with self.db.reading() as session:
            owned = set(
                session.scalars(
                    select(DataKeyRow.key_id).where(
                        DataKeyRow.project_uid == project_uid, DataKeyRow.key_id.in_(key_ids)
                    )
                )
            )
        for key_id in key_ids:
            if key_id not in owned:
                raise DataCorrupted(
                    f"a blob of the project names data key {key_id}, which is not the "
                    "project's: the store was altered"
                )
        return {key_id: self.keyring.get(key_id) for key_id in key_ids}

    def purge(self, project_uid: str, sha256: str) -> bool:
        """Delete a released blob now rather than at the next sweep (erasure of personal data).
        Safe against a concurrent write of the same bytes: its `acquire` finds the file gone
        and asks for a retry. True when the blob was deleted."""
        with self.db.transaction() as session:
            result = session.execute(
                delete(BlobRow).where(
                    BlobRow.project_uid == project_uid,
                    BlobRow.sha256 == sha256,
                    BlobRow.refcount == 0,
                )
            )
            gone = cast(CursorResult[Any], result).rowcount
        if gone:
            self.store.delete(project_uid, sha256)
        return bool(gone)

    def adopt_legacy_names(self) -> int:
        """Give every blob a store wrote before keyed names its keyed name (once per store: a
        marker object records that it was done). Reads fall back to legacy names meanwhile, so
        an interrupted pass only costs the next start a second look. Returns how many blobs
        were renamed."""
        if not self.store.keyed_names or self.store.read_small_object(KEYED_NAMES_MARKER):
            return 0
        with self.db.transaction() as session:
            found = session.execute(select(BlobRow.project_uid, BlobRow.sha256))
            rows = [(project, sha) for project, sha in found]
        renamed = sum(self.store.adopt_legacy_name(project, sha) for project, sha in rows)
        self.store.write_small_object(KEYED_NAMES_MARKER, b"blob files carry keyed names\n")
        if renamed:
            log.info("renamed %d blobs from their SHA-256 to their keyed names", renamed)
        return renamed

    def sweep(self, grace_seconds: float) -> SweepReport:
        """Remove unfinished uploads and unreferenced blobs older than the grace period."""
        temp = self.store.sweep_tmp(grace_seconds)
        cutoff = utcnow() - timedelta(seconds=grace_seconds)
        with self.db.transaction() as session:
            released = [
                (r.project_uid, r.sha256)
                for r in session.scalars(select(BlobRow).where(BlobRow.refcount == 0))
                if r.released_at is not None and as_utc(r.released_at) <= cutoff
            ]
            for project_uid, sha in released:
                session.execute(
                    delete(BlobRow).where(
                        BlobRow.project_uid == project_uid,
                        BlobRow.sha256 == sha,
                        BlobRow.refcount == 0,
                    )
                )
        for project_uid, sha in released:
            self.store.delete(project_uid, sha)
        if temp or released:
            log.info("swept %d unfinished uploads and %d released blobs", temp, len(released))
        return SweepReport(temp_files=temp, released_blobs=len(released))
