"""Datasets and their versions.

A push is three steps, as for models: declare the files (the same content as an existing
version answers that version: nothing to upload, no new version), upload the missing ones,
commit. Committing reads the files back from the store, infers the schema and computes the
profile (`profiling.py`); a file that cannot be read fails the commit and the pending version
is removed, so nothing half-made stays behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.events import DatasetVersionCommitted, EventBus, guard_project_deletion
from stratus.core.ids import new_id
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, metadata_of, paginate
from stratus.data import schemas as s
from stratus.data.rules import RuleSet
from stratus.data.tables import DatasetRow, DatasetVersionRow, ValidationRow
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo
from stratus.storage.grants import DEFAULT_TTL_SECONDS, ArtifactGrant
from stratus.storage.uploads import FileUpload, declared_file, record_upload

if TYPE_CHECKING:
    import pyarrow as pa

    from stratus.data.batches import BatchSource

SPOOL_BYTES = 32 * 2**20  # a version's file is parsed from memory up to this size, else disk
ProjectLookup = Callable[[Session, str], str]  # (the caller's session, project name) -> uid


def content_hash(files: list[s.FileEntry]) -> str:
    """One SHA-256 for a version's content: its files' paths and bytes, in path order."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.sha256}\0{f.size}\n".encode())
    return digest.hexdigest()


class DataService:
    def __init__(
        self, db: Database, blobs: Blobs, bus: EventBus, project_uid: ProjectLookup
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.bus = bus
        self._project_uid = project_uid
        self._datasets = ProjectScoped(DatasetRow, "dataset")
        # NAME:VERSION of a model version of the project, or NotFound (set by the registry,
        # which is built after this service): checks a version's lineage.
        self.model_version: Callable[[str, str], str] | None = None
        guard_project_deletion(bus, DatasetRow.project_uid, DatasetRow.name, "datasets")

    # --- datasets ----------------------------------------------------------------------------

    def create(self, project: str, data: s.DatasetCreate) -> s.DatasetRead:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._datasets.refuse_duplicate(session, project_uid, project, data.name)
            row = DatasetRow(
                name=data.name,
                project_uid=project_uid,
                description=data.description,
                labels=data.labels,
                column_tags=data.column_tags,
            )
            session.add(row)
            session.flush()
            return self._read(session, row, project)

    def list_datasets(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.DatasetRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._datasets, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._read(session, r, p) for r, p in pairs], token

    def get(self, project: str, name: str) -> s.DatasetRead:
        with self.db.transaction() as session:
            return self._read(session, self._dataset(session, project, name), project)

    def update(self, project: str, name: str, data: s.DatasetUpdate) -> s.DatasetRead:
        with self.db.transaction() as session:
            row = self._dataset(session, project, name)
            self._datasets.update(row, data)
            if data.column_tags is not None:
                row.column_tags = data.column_tags
            session.flush()
            return self._read(session, row, project)

    def delete(self, project: str, name: str, force: bool = False) -> None:
        with self.db.transaction() as session:
            row = self._dataset(session, project, name)
            versions = session.scalars(
                select(DatasetVersionRow).where(DatasetVersionRow.dataset_uid == row.uid)
            ).all()
            if versions and not force:
                raise Conflict(
                    f"dataset {name!r} has {len(versions)} versions: delete it with force"
                )
            for version in versions:
                self._release(session, row.project_uid, version)
            session.delete(row)

    # --- pushing a version -------------------------------------------------------------------

    def create_version(
        self, project: str, dataset: str, data: s.VersionCreate, *, actor: str
    ) -> tuple[s.VersionRead, bool]:
        """Declare a version's files; (the version, whether it is new). The same content as
        a ready version answers that version."""
        paths = [f.path for f in data.files]
        if len(set(paths)) != len(paths):
            raise InvalidInput("the same file path is listed twice")
        digest = content_hash(data.files)
        lineage = self._lineage(project, data.lineage) if data.lineage else None
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            same = session.scalars(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset_uid == row.uid,
                    DatasetVersionRow.content_sha256 == digest,
                    DatasetVersionRow.state == "ready",
                )
            ).first()
            if same is not None:
                read = self._version_read(session, row, same, project)
                read.existing = True
                return read, False
            number = row.next_version
            row.next_version = number + 1
            version = DatasetVersionRow(
                uid=new_id("dv"),
                dataset_uid=row.uid,
                version=number,
                state="pending",
                content_sha256=digest,
                files=[{**f.model_dump(), "stored": False} for f in data.files],
                size=sum(f.size for f in data.files),
                description=data.description,
                lineage=lineage,
                created_by=actor,
                created_at=utcnow(),
            )
            session.add(version)
            session.flush()
            known = self.blobs.known(session, row.project_uid, (f.sha256 for f in data.files))
            read = self._version_read(session, row, version, project)
        for f in read.files:
            f.stored = f.sha256 in known
        return read, True

    def _lineage(self, project: str, lineage: s.Lineage) -> dict[str, Any] | None:
        """The lineage with each reference checked and pinned to NAME:VERSION."""
        out: dict[str, Any] = {}
        if lineage.dataset_version is not None:
            name, _, number = lineage.dataset_version.partition(":")
            if not name or not number.isdigit():
                raise InvalidInput(
                    f"lineage dataset_version {lineage.dataset_version!r}: give NAME:VERSION"
                )
            try:
                found = self.get_version(project, name, number)
            except NotFound:
                raise NotFound(
                    f"lineage dataset_version {lineage.dataset_version!r} is not a dataset "
                    "version of this project"
                ) from None
            out["dataset_version"] = f"{found.dataset}:{found.version}"
        if lineage.model_version is not None:
            if self.model_version is None:  # pragma: no cover - the platform always sets it
                raise InvalidInput("this control plane cannot check model versions")
            out["model_version"] = self.model_version(project, lineage.model_version)
        if lineage.job is not None:
            out["job"] = lineage.job
        return out or None

    def begin_upload(self, project: str, dataset: str, number: int, path: str) -> FileUpload:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, str(number))
            entry = declared_file(version, path, f"{dataset}:{number}")
            project_uid, version_uid = row.project_uid, version.uid
        return FileUpload.start(self.blobs, project_uid, version_uid, entry)

    def finish_upload(self, upload: FileUpload) -> s.VersionFile:
        info = upload.writer.commit(expected_sha256=upload.sha256)
        with self.db.transaction() as session:
            version = session.get(DatasetVersionRow, upload.version_uid, with_for_update=True)
            return s.VersionFile(**record_upload(self.blobs, session, version, upload, info))

    def commit_version(self, project: str, dataset: str, number: int) -> s.VersionRead:
        """Read the files, infer the schema, profile them; then the version is ready.

        The files are read a record batch at a time (`batches.py`), so memory is bounded by a
        batch and the profile's sketches, not by the files' size."""
        from stratus.data.profiling import profile_batches, schema_of

        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, str(number), for_update=True)
            if version.state == "ready":
                return self._version_read(session, row, version, project)
            known = self.blobs.known(session, row.project_uid, (f["sha256"] for f in version.files))
            missing = [f["path"] for f in version.files if f["sha256"] not in known]
            if missing:
                shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                raise Conflict(f"{dataset}:{number} cannot be committed: upload {shown} first")
            project_uid, files = row.project_uid, [dict(f) for f in version.files]
        try:
            with self._open_rows(project_uid, files) as source:
                schema = [c.model_dump(mode="json") for c in schema_of(source)]
                profiled = profile_batches(source)
            profile = profiled.model_dump(mode="json")
        except InvalidInput:
            self._discard(project, dataset, number)
            raise
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, str(number), for_update=True)
            if version.state == "ready":
                return self._version_read(session, row, version, project)
            for entry in version.files:
                if not entry["stored"]:
                    info = BlobInfo(sha256=entry["sha256"], size=entry["size"])
                    self.blobs.acquire(session, row.project_uid, info)
                    entry["stored"] = True
            flag_modified(version, "files")
            version.schema, version.profile, version.rows = schema, profile, profiled.rows
            version.state, version.committed_at = "ready", utcnow()
            session.flush()
            self.bus.publish(session, DatasetVersionCommitted(project, dataset, version.version))
            return self._version_read(session, row, version, project)

    def _load_table(self, project_uid: str, files: list[dict[str, Any]]) -> pa.Table:
        """A version's files, read and joined into one table (in path order)."""
        from stratus.data.formats import combine, format_of, read_table

        tables = []
        for f in sorted(files, key=lambda f: f["path"]):
            # Spooled to a temporary file (in memory while small): the bytes are held once,
            # by the parser, not also as one joined copy.
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
                for chunk in self.blobs.open(project_uid, f["sha256"]):
                    spooled.write(chunk)
                spooled.seek(0)
                tables.append(
                    (f["path"], read_table(spooled, format_of(f["path"]), name=f["path"]))
                )
        return combine(tables)

    @contextlib.contextmanager
    def _open_rows(self, project_uid: str, files: list[dict[str, Any]]) -> Iterator[BatchSource]:
        """A version's files as one stream of record batches (in path order), readable again
        for each pass: each file is spooled once to a temporary file (in memory while small)."""
        from stratus.data.batches import FileSource, open_file, reopener
        from stratus.data.formats import format_of

        with contextlib.ExitStack() as stack:
            sources: list[tuple[str, BatchSource]] = []
            for f in sorted(files, key=lambda f: f["path"]):
                spooled = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))
                for chunk in self.blobs.open(project_uid, f["sha256"]):
                    spooled.write(chunk)
                source = open_file(reopener(spooled), format_of(f["path"]), f["path"])
                sources.append((f["path"], source))
            yield FileSource(sources)

    def _discard(self, project: str, dataset: str, number: int) -> None:
        """Remove a pending version whose files could not be read (and its blob references)."""
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, str(number), for_update=True)
            if version.state == "pending":
                self._release(session, row.project_uid, version)
                session.delete(version)

    # --- reading versions --------------------------------------------------------------------

    def list_versions(
        self, project: str, dataset: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.VersionRead], str | None]:
        """Versions, newest first."""
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            stmt = select(DatasetVersionRow).where(DatasetVersionRow.dataset_uid == row.uid)
            versions, token = paginate(
                session, stmt, DatasetVersionRow.version, limit, page_token, descending=True
            )
            return [self._version_read(session, row, v, project) for v in versions], token

    def get_version(self, project: str, dataset: str, ref: str) -> s.VersionRead:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            return self._version_read(session, row, self._version(session, row, ref), project)

    def load_table(self, project: str, dataset: str, ref: str) -> tuple[s.VersionRead, pa.Table]:
        """A ready version's rows, as one table (the monitors' drift reference)."""
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            if version.state != "ready":
                raise Conflict(f"{dataset}:{version.version} is not committed yet")
            read = self._version_read(session, row, version, project)
            project_uid, files = row.project_uid, list(version.files)
        return read, self._load_table(project_uid, files)

    def grant(
        self, project: str, dataset: str, ref: str, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> tuple[s.VersionRead, ArtifactGrant]:
        """A ready version and a grant to its files, with which a job fetches them from the
        store itself (`stratus.storage.grants.fetch`) for `ttl_seconds`."""
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            if version.state != "ready":
                raise Conflict(f"{dataset}:{version.version} is not committed yet")
            read = self._version_read(session, row, version, project)
            project_uid = row.project_uid
        files = [(f.path, f.sha256, f.size) for f in read.files]
        return read, self.blobs.grant(project_uid, files, ttl_seconds)

    def profile(self, project: str, dataset: str, ref: str) -> s.ProfileRead:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            if version.state != "ready" or version.profile is None:
                raise Conflict(f"{dataset}:{version.version} is not committed yet")
            return s.ProfileRead(dataset=dataset, version=version.version, profile=version.profile)

    def open_file(
        self, project: str, dataset: str, ref: str, path: str
    ) -> tuple[s.VersionFile, Iterator[bytes]]:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            entry = next((f for f in version.files if f["path"] == path), None)
            if entry is None or not entry["stored"]:
                raise NotFound(f"{dataset}:{version.version} has no file {path!r}")
            project_uid = row.project_uid
        return s.VersionFile(**entry), self.blobs.open(project_uid, entry["sha256"])

    def delete_version(self, project: str, dataset: str, ref: str) -> None:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref, for_update=True)
            self._release(session, row.project_uid, version)
            session.execute(delete(DatasetVersionRow).where(DatasetVersionRow.uid == version.uid))

    # --- validating a version ------------------------------------------------------------------

    def validate(
        self, project: str, dataset: str, ref: str, rules: RuleSet, *, actor: str
    ) -> s.ValidationRead:
        """Check a ready version against `rules` and store the report with it (passed or not).

        Raises:
            Conflict: the version is not committed yet.
            NotFound: the drift reference names a version that does not exist.
            InvalidInput: a rule cannot apply to its column.
        """
        from stratus.data.validation import validate_batches

        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            if version.state != "ready":
                raise Conflict(f"{dataset}:{version.version} is not committed yet")
            reference, label = (None, None)
            if rules.needs_reference():
                wanted = rules.drift.reference if rules.drift is not None else "previous"
                reference, label = self._reference(session, project, row, version, wanted)
            project_uid, files, number = row.project_uid, list(version.files), version.version
            version_uid = version.uid
            not_compared = frozenset(
                column
                for column, tags in (row.column_tags or {}).items()
                if {"id", "pii", "timestamp"} & set(tags)
            )
        with self._open_rows(project_uid, files) as source:
            report = validate_batches(source, rules, reference, label, not_compared)
        rules_json = rules.model_dump(mode="json", exclude_unset=True)
        rules_hash = hashlib.sha256(json.dumps(rules_json, sort_keys=True).encode()).hexdigest()
        with self.db.transaction() as session:
            if session.get(DatasetVersionRow, version_uid) is None:
                raise NotFound(f"{dataset}:{number} was deleted while it was being validated")
            validation = ValidationRow(
                uid=new_id("val"),
                version_uid=version_uid,
                passed=report.passed,
                rules=rules_json,
                rules_sha256=rules_hash,
                report=report.model_dump(mode="json"),
                reference=label if reference is not None else None,
                created_at=utcnow(),
                created_by=actor,
            )
            session.add(validation)
            session.flush()
            return self._validation_read(validation, dataset, number)

    def list_validations(
        self, project: str, dataset: str, ref: str, limit: int | None, page_token: str | None
    ) -> tuple[list[s.ValidationRead], str | None]:
        """A version's validations, newest first."""
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            stmt = select(ValidationRow).where(ValidationRow.version_uid == version.uid)
            found, token = paginate(
                session, stmt, ValidationRow.uid, limit, page_token, descending=True
            )
            return [self._validation_read(v, dataset, version.version) for v in found], token

    def get_validation(
        self, project: str, dataset: str, ref: str, validation_id: str
    ) -> s.ValidationRead:
        with self.db.transaction() as session:
            row = self._dataset(session, project, dataset)
            version = self._version(session, row, ref)
            found = session.get(ValidationRow, validation_id)
            if found is None or found.version_uid != version.uid:
                raise NotFound(f"{dataset}:{version.version} has no validation {validation_id!r}")
            return self._validation_read(found, dataset, version.version)

    def _reference(
        self,
        session: Session,
        project: str,
        dataset: DatasetRow,
        version: DatasetVersionRow,
        wanted: str | int,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The profile drift is measured against, and its NAME:VERSION; (None, None) when
        `previous` is asked for the first version."""
        if wanted == "previous":
            earlier = session.scalars(
                select(DatasetVersionRow)
                .where(
                    DatasetVersionRow.dataset_uid == dataset.uid,
                    DatasetVersionRow.state == "ready",
                    DatasetVersionRow.version < version.version,
                )
                .order_by(DatasetVersionRow.version.desc())
                .limit(1)
            ).first()
            if earlier is None:
                return None, None
            return earlier.profile, f"{dataset.name}:{earlier.version}"
        text = str(wanted)
        if ":" in text:
            name, number = text.rsplit(":", 1)
        elif text.isdigit() or text == "latest":
            name, number = "", text
        else:
            name, number = text, "latest"
        other = self._dataset(session, project, name) if name else dataset
        found = self._version(session, other, number or "latest")
        if found.state != "ready" or found.profile is None:
            raise Conflict(f"the drift reference {other.name}:{found.version} is not committed")
        return found.profile, f"{other.name}:{found.version}"

    @staticmethod
    def _validation_read(row: ValidationRow, dataset: str, version: int) -> s.ValidationRead:
        return s.ValidationRead(
            id=row.uid,
            dataset=dataset,
            version=version,
            passed=row.passed,
            reference=row.reference,
            rules=RuleSet.model_validate(row.rules),
            report=row.report,
            created_at=as_utc(row.created_at),
            created_by=row.created_by,
        )

    # --- helpers -----------------------------------------------------------------------------

    def _dataset(self, session: Session, project: str, name: str) -> DatasetRow:
        return self._datasets.find(session, self._project_uid(session, project), project, name)

    def _version(
        self, session: Session, dataset: DatasetRow, ref: str, for_update: bool = False
    ) -> DatasetVersionRow:
        """A version by number, or `latest` (the newest ready one)."""
        stmt = select(DatasetVersionRow).where(DatasetVersionRow.dataset_uid == dataset.uid)
        if ref.isdigit():
            if int(ref) > 2**31:  # past any version, and past what SQLite compares
                raise NotFound(f"dataset {dataset.name!r} has no version {ref}")
            stmt = stmt.where(DatasetVersionRow.version == int(ref))
        elif ref == "latest":
            stmt = stmt.where(DatasetVersionRow.state == "ready").order_by(
                DatasetVersionRow.version.desc()
            )
        else:
            raise InvalidInput(f"{ref!r} is not a version: give a number or 'latest'")
        if for_update:
            stmt = stmt.with_for_update()
        version = session.scalars(stmt.limit(1)).first()
        if version is None:
            raise NotFound(f"dataset {dataset.name!r} has no version {ref}")
        return version

    def _release(self, session: Session, project_uid: str, version: DatasetVersionRow) -> None:
        for entry in version.files:
            if entry.get("stored"):
                self.blobs.release(session, project_uid, entry["sha256"])

    @staticmethod
    def _read(session: Session, row: DatasetRow, project: str) -> s.DatasetRead:
        count, latest = session.execute(
            select(func.count(), func.max(DatasetVersionRow.version)).where(
                DatasetVersionRow.dataset_uid == row.uid, DatasetVersionRow.state == "ready"
            )
        ).one()
        return s.DatasetRead(
            metadata=metadata_of(row, project=project),
            spec=s.DatasetSpec(description=row.description, column_tags=row.column_tags or {}),
            status=s.DatasetStatus(versions=int(count), latest_version=latest),
        )

    @staticmethod
    def _version_read(
        session: Session, dataset: DatasetRow, v: DatasetVersionRow, project: str
    ) -> s.VersionRead:
        tags: dict[str, list[str]] = dataset.column_tags or {}
        columns: list[dict[str, Any]] = v.schema or []
        return s.VersionRead(
            dataset=dataset.name,
            project=project,
            version=v.version,
            state="ready" if v.state == "ready" else "pending",
            content_sha256=v.content_sha256,
            files=[s.VersionFile(**f) for f in v.files],
            size=v.size,
            rows=v.rows,
            columns=[s.ColumnRead(**c, tags=tags.get(c["name"], [])) for c in columns],
            description=v.description,
            lineage=s.Lineage.model_validate(v.lineage) if v.lineage else None,
            created_at=as_utc(v.created_at),
            created_by=v.created_by,
            committed_at=as_utc(v.committed_at) if v.committed_at else None,
            validation=DataService._last_validation(session, v.uid),
        )

    @staticmethod
    def _last_validation(session: Session, version_uid: str) -> s.ValidationSummary | None:
        last = session.execute(
            select(ValidationRow.uid, ValidationRow.passed, ValidationRow.created_at)
            .where(ValidationRow.version_uid == version_uid)
            .order_by(ValidationRow.uid.desc())
            .limit(1)
        ).first()
        if last is None:
            return None
        return s.ValidationSummary(id=last[0], passed=last[1], created_at=as_utc(last[2]))
