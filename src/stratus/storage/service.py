"""Buckets and objects: versioned puts, verified reads, listings with prefixes.

An upload streams into a blob first (no transaction held), then one short transaction makes
the new version visible; a failed or abandoned upload leaves nothing behind but a temp file
that `Blobs.sweep` removes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.events import EventBus, guard_project_deletion
from stratus.core.ids import new_id
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import (
    ProjectScoped,
    check_limit,
    decode_token,
    encode_token,
    metadata_of,
)
from stratus.storage import schemas as s
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobWriter
from stratus.storage.errors import object_not_found
from stratus.storage.object_keys import validate_key, validate_prefix
from stratus.storage.tables import BlobRow, BucketRow, ObjectRow, ObjectVersionRow

ProjectLookup = Callable[[Session, str], str]  # (the caller's session, project name) -> uid


@dataclass(frozen=True)
class StoredBytes:
    """What one bucket holds, for metering."""

    project: str
    bucket: str
    bytes: int


@dataclass
class Upload:
    """An object upload in progress: feed `write`, then `StorageService.finish_put`."""

    project: str
    project_uid: str
    bucket: str
    bucket_uid: str
    key: str
    writer: BlobWriter

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def abort(self) -> None:
        self.writer.abort()


class StorageService:
    def __init__(
        self, db: Database, blobs: Blobs, bus: EventBus, project_uid: ProjectLookup
    ) -> None:
        self.db = db
        self.blobs = blobs
        self._project_uid = project_uid
        guard_project_deletion(bus, BucketRow.project_uid, BucketRow.name, "buckets")
        self._buckets = ProjectScoped(BucketRow, "bucket")

    # --- buckets -----------------------------------------------------------------------------

    def create_bucket(self, project: str, data: s.BucketCreate) -> s.BucketRead:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._buckets.refuse_duplicate(session, project_uid, project, data.name)
            row = BucketRow(
                name=data.name,
                project_uid=project_uid,
                description=data.description,
                labels=data.labels,
            )
            session.add(row)
            session.flush()
            return self._bucket_read(session, row, project)

    def list_buckets(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.BucketRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._buckets, session, project, self._project_uid, selector, limit, page_token
            )
            usage = self._usage(session, [r.uid for r, _ in pairs])  # one query for the page
            return [
                self._bucket_read(session, r, p, usage.get(r.uid, (0, 0))) for r, p in pairs
            ], token

    def stored_bytes(self) -> list[StoredBytes]:
        """The bytes each bucket holds, every version counted (what metering samples)."""
        from stratus.iam.tables import ProjectRow

        with self.db.transaction() as session:
            rows = session.execute(
                select(
                    ProjectRow.name,
                    BucketRow.name,
                    func.coalesce(func.sum(ObjectVersionRow.size), 0),
                )
                .join(ProjectRow, ProjectRow.uid == BucketRow.project_uid)
                .outerjoin(
                    ObjectVersionRow,
                    (ObjectVersionRow.bucket_uid == BucketRow.uid)
                    & ObjectVersionRow.is_delete_marker.is_(False),
                )
                .group_by(ProjectRow.name, BucketRow.name)
            ).all()
            stored = [StoredBytes(project, bucket, int(size)) for project, bucket, size in rows]
            # the rest of each project's bytes: datasets, models, artifacts, logs (bucket "")
            held = session.execute(
                select(ProjectRow.name, func.coalesce(func.sum(BlobRow.size), 0))
                .join(ProjectRow, ProjectRow.uid == BlobRow.project_uid)
                .where(BlobRow.refcount > 0)
                .group_by(ProjectRow.name)
            ).all()
            in_buckets: dict[str, int] = {}
            for item in stored:
                in_buckets[item.project] = in_buckets.get(item.project, 0) + item.bytes
            for project, size in held:
                rest = int(size) - in_buckets.get(project, 0)
                if rest > 0:
                    stored.append(StoredBytes(project, "", rest))
            return stored

    def get_bucket(self, project: str, name: str) -> s.BucketRead:
        with self.db.transaction() as session:
            row = self._bucket(session, project, name)
            return self._bucket_read(session, row, project)

    def update_bucket(self, project: str, name: str, data: s.BucketUpdate) -> s.BucketRead:
        with self.db.transaction() as session:
            row = self._bucket(session, project, name)
            self._buckets.update(row, data)
            session.flush()
            return self._bucket_read(session, row, project)

    def delete_bucket(self, project: str, name: str, force: bool = False) -> None:
        with self.db.transaction() as session:
            row = self._bucket(session, project, name)
            versions = session.scalars(
                select(ObjectVersionRow).where(ObjectVersionRow.bucket_uid == row.uid)
            ).all()
            live = session.scalar(
                select(func.count()).where(
                    ObjectRow.bucket_uid == row.uid, ObjectRow.current_version_id.is_not(None)
                )
            )
            if versions and not force:
                raise Conflict(
                    f"bucket {name!r} holds {live} objects and {len(versions)} versions: "
                    "delete them first, or delete the bucket with force"
                )
            for version in versions:
                if version.sha256 is not None:
                    self.blobs.release(session, row.project_uid, version.sha256)
            session.delete(row)

    def _bucket(self, session: Session, project: str, name: str) -> BucketRow:
        return self._buckets.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _usage(session: Session, bucket_uids: list[str]) -> dict[str, tuple[int, int]]:
        """Objects and bytes held now, by bucket."""
        if not bucket_uids:
            return {}
        rows = session.execute(
            select(ObjectRow.bucket_uid, func.count(), func.coalesce(func.sum(ObjectRow.size), 0))
            .where(ObjectRow.bucket_uid.in_(bucket_uids), ObjectRow.current_version_id.is_not(None))
            .group_by(ObjectRow.bucket_uid)
        ).all()
        return {uid: (int(count), int(size)) for uid, count, size in rows}

    @classmethod
    def _bucket_read(
        cls,
        session: Session,
        row: BucketRow,
        project: str,
        usage: tuple[int, int] | None = None,
    ) -> s.BucketRead:
        if usage is None:
            usage = cls._usage(session, [row.uid]).get(row.uid, (0, 0))
        count, size = usage
        return s.BucketRead(
            metadata=metadata_of(row, project=project),
            spec=s.BucketSpec(description=row.description),
            status=s.BucketStatus(objects=int(count), size_bytes=int(size)),
        )

    # --- objects: writing --------------------------------------------------------------------

    def begin_put(self, project: str, bucket: str, key: str) -> Upload:
        validate_key(key)
        with self.db.transaction() as session:
            row = self._bucket(session, project, bucket)
            bucket_uid, project_uid = row.uid, row.project_uid
        return Upload(project, project_uid, bucket, bucket_uid, key, self.blobs.writer(project_uid))

    def finish_put(
        self,
        upload: Upload,
        *,
        actor: str,
        content_type: str | None,
        expected_sha256: str | None = None,
    ) -> s.ObjectVersionRead:
        # A mismatch is refused before the blob is published, so no orphan file is left.
        info = upload.writer.commit(expected_sha256)
        try:
            with self.db.transaction() as session:
                self.blobs.acquire(session, upload.project_uid, info)
                obj = self._object_for_update(session, upload.bucket_uid, upload.key)
                version = ObjectVersionRow(
                    version_id=new_id("v"),
                    object_id=obj.id,
                    bucket_uid=upload.bucket_uid,
                    key=upload.key,
                    sha256=info.sha256,
                    size=info.size,
                    content_type=(content_type or "application/octet-stream")[:255],
                    created_by=actor,
                    created_at=utcnow(),
                )
                session.add(version)
                obj.current_version_id, obj.size, obj.updated_at = (
                    version.version_id,
                    info.size,
                    version.created_at,
                )
                session.flush()
                return self._version_read(version, upload.bucket, is_latest=True)
        except IntegrityError as exc:
            raise NotFound(f"bucket {upload.bucket!r} was deleted during the upload") from exc

    def _object_for_update(self, session: Session, bucket_uid: str, key: str) -> ObjectRow:
        stmt = (
            select(ObjectRow)
            .where(ObjectRow.bucket_uid == bucket_uid, ObjectRow.key == key)
            .with_for_update()
        )
        obj = session.scalar(stmt)
        if obj is None:
            try:
                with session.begin_nested():
                    obj = ObjectRow(bucket_uid=bucket_uid, key=key)
                    session.add(obj)
                    session.flush()
            except IntegrityError:
                # A concurrent first upload of the same key created the row: use (and lock) it.
                obj = session.scalar(stmt)
                if obj is None:
                    raise
        return obj

    def delete_object(
        self, project: str, bucket: str, key: str, version_id: str | None, actor: str
    ) -> s.ObjectVersionRead:
        """Without a version: add a delete marker (older versions stay readable).
        With one: remove that version for good."""
        validate_key(key)
        with self.db.transaction() as session:
            row = self._bucket(session, project, bucket)
            obj = session.scalar(
                select(ObjectRow)
                .where(ObjectRow.bucket_uid == row.uid, ObjectRow.key == key)
                .with_for_update()
            )
            if obj is None:
                raise object_not_found(bucket, key, version_id)
            if version_id is None:
                if obj.current_version_id is None:
                    raise object_not_found(bucket, key)
                marker = ObjectVersionRow(
                    version_id=new_id("v"),
                    object_id=obj.id,
                    bucket_uid=row.uid,
                    key=key,
                    is_delete_marker=True,
                    created_by=actor,
                    created_at=utcnow(),
                )
                session.add(marker)
                obj.current_version_id, obj.size, obj.updated_at = None, 0, marker.created_at
                session.flush()
                return self._version_read(marker, bucket, is_latest=True)
            version = session.get(ObjectVersionRow, version_id)
            if version is None or version.object_id != obj.id:
                raise object_not_found(bucket, key, version_id)
            newest = session.scalar(
                select(ObjectVersionRow.version_id)
                .where(ObjectVersionRow.object_id == obj.id)
                .order_by(ObjectVersionRow.version_id.desc())
                .limit(1)
            )
            read = self._version_read(version, bucket, is_latest=newest == version_id)
            if version.sha256 is not None:
                self.blobs.release(session, row.project_uid, version.sha256)
            session.delete(version)
            session.flush()
            self._repoint(session, obj)
            return read

    @staticmethod
    def _repoint(session: Session, obj: ObjectRow) -> None:
        """After a version is removed, the newest remaining one becomes current."""
        newest = session.scalar(
            select(ObjectVersionRow)
            .where(ObjectVersionRow.object_id == obj.id)
            .order_by(ObjectVersionRow.version_id.desc())
            .limit(1)
        )
        if newest is None:
            session.delete(obj)
        elif newest.is_delete_marker:
            obj.current_version_id, obj.size = None, 0
        else:
            obj.current_version_id, obj.size = newest.version_id, newest.size

    # --- objects: reading --------------------------------------------------------------------

    def head_object(
        self, project: str, bucket: str, key: str, version_id: str | None
    ) -> tuple[s.ObjectVersionRead, str]:
        """The version to read and its project uid (for `open_object`)."""
        validate_key(key)
        with self.db.transaction() as session:
            row = self._bucket(session, project, bucket)
            obj = session.scalar(
                select(ObjectRow).where(ObjectRow.bucket_uid == row.uid, ObjectRow.key == key)
            )
            if obj is None:
                raise object_not_found(bucket, key, version_id)
            wanted = version_id or obj.current_version_id
            if wanted is None:
                raise object_not_found(bucket, key)
            version = session.get(ObjectVersionRow, wanted)
            if version is None or version.object_id != obj.id:
                raise object_not_found(bucket, key, version_id)
            if version.is_delete_marker:
                raise NotFound(f"version {wanted!r} of {key!r} is a delete marker, not content")
            latest = wanted == obj.current_version_id
            return self._version_read(version, bucket, is_latest=latest), row.project_uid

    def open_object(
        self, project: str, bucket: str, key: str, version_id: str | None
    ) -> tuple[s.ObjectVersionRead, Iterator[bytes]]:
        version, project_uid = self.head_object(project, bucket, key, version_id)
        assert version.sha256 is not None
        return version, self.blobs.open(project_uid, version.sha256)

    def list_objects(
        self,
        project: str,
        bucket: str,
        prefix: str = "",
        delimiter: str | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> s.ObjectListing:
        validate_prefix(prefix)
        if delimiter is not None and len(delimiter) != 1:
            raise InvalidInput("delimiter must be a single character, such as '/'")
        size = check_limit(limit)
        after = decode_token(page_token)
        if after is not None and not isinstance(after, str):
            raise InvalidInput(f"page_token {page_token!r} is not valid")
        objects: list[s.ObjectInfo] = []
        prefixes: list[str] = []
        with self.db.transaction() as session:
            row = self._bucket(session, project, bucket)
            cursor: str | None = after
            exhausted = False
            while not exhausted and len(objects) + len(prefixes) < size:
                batch = self._live_objects(session, row.uid, prefix, cursor, size + 1)
                exhausted = len(batch) <= size
                for obj, version in batch:
                    rest = obj.key[len(prefix) :]
                    if delimiter and delimiter in rest:
                        common = prefix + rest[: rest.index(delimiter) + 1]
                        prefixes.append(common)
                        # Every key under `common` sorts before common + U+10FFFF: skip them.
                        cursor = common + "\U0010ffff"
                        exhausted = False
                        break
                    objects.append(
                        s.ObjectInfo(
                            key=obj.key,
                            version_id=version.version_id,
                            size=version.size,
                            sha256=version.sha256,
                            content_type=version.content_type,
                            updated_at=as_utc(version.created_at),
                        )
                    )
                    cursor = obj.key
                    if len(objects) + len(prefixes) >= size:
                        exhausted = len(batch) <= size and obj is batch[-1][0]
                        break
            more = (
                not exhausted
                and cursor is not None
                and bool(self._live_objects(session, row.uid, prefix, cursor, 1))
            )
        token = encode_token(cursor) if more else None
        return s.ObjectListing(objects=objects, prefixes=prefixes, next_page_token=token)

    @staticmethod
    def _live_objects(
        session: Session, bucket_uid: str, prefix: str, after: str | None, limit: int
    ) -> list[tuple[ObjectRow, ObjectVersionRow]]:
        stmt = (
            select(ObjectRow, ObjectVersionRow)
            .join(ObjectVersionRow, ObjectVersionRow.version_id == ObjectRow.current_version_id)
            .where(ObjectRow.bucket_uid == bucket_uid)
            .order_by(ObjectRow.key)
            .limit(limit)
        )
        if prefix:
            stmt = stmt.where(ObjectRow.key.startswith(prefix, autoescape=True))
        if after is not None:
            stmt = stmt.where(ObjectRow.key > after)
        return [(o, v) for o, v in session.execute(stmt).all()]

    def list_versions(
        self,
        project: str,
        bucket: str,
        prefix: str = "",
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.ObjectVersionRead], str | None]:
        """Every version, newest first within each key, keys in order."""
        validate_prefix(prefix)
        size = check_limit(limit)
        after = decode_token(page_token)
        with self.db.transaction() as session:
            row = self._bucket(session, project, bucket)
            newest = (
                select(
                    ObjectVersionRow.object_id,
                    func.max(ObjectVersionRow.version_id).label("newest"),
                )
                .where(ObjectVersionRow.bucket_uid == row.uid)
                .group_by(ObjectVersionRow.object_id)
                .subquery()
            )
            stmt = (
                select(ObjectVersionRow, newest.c.newest)
                .join(newest, newest.c.object_id == ObjectVersionRow.object_id)
                .where(ObjectVersionRow.bucket_uid == row.uid)
            )
            if prefix:
                stmt = stmt.where(ObjectVersionRow.key.startswith(prefix, autoescape=True))
            if after is not None:
                if not (isinstance(after, list) and len(after) == 2):
                    raise InvalidInput(f"page_token {page_token!r} is not valid")
                key, vid = str(after[0]), str(after[1])
                stmt = stmt.where(
                    (ObjectVersionRow.key > key)
                    | ((ObjectVersionRow.key == key) & (ObjectVersionRow.version_id < vid))
                )
            stmt = stmt.order_by(ObjectVersionRow.key, ObjectVersionRow.version_id.desc())
            rows = session.execute(stmt.limit(size + 1)).all()
            items = [
                self._version_read(v, bucket, is_latest=v.version_id == latest)
                for v, latest in rows[:size]
            ]
        token = None
        if len(rows) > size:
            last = rows[size - 1][0]
            token = encode_token([last.key, last.version_id])
        return items, token

    @staticmethod
    def _version_read(v: ObjectVersionRow, bucket: str, is_latest: bool) -> s.ObjectVersionRead:
        return s.ObjectVersionRead(
            bucket=bucket,
            key=v.key,
            version_id=v.version_id,
            size=v.size,
            sha256=v.sha256,
            content_type=v.content_type,
            is_latest=is_latest,
            is_delete_marker=v.is_delete_marker,
            created_at=as_utc(v.created_at),
            created_by=v.created_by,
        )
