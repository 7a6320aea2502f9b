"""Models, versions, aliases and cards.

A push is three steps, so big artifacts stream and nothing half-written is ever visible:
declare the version's files (the answer says which the project does not store yet), upload
those, commit. Committing loads the version once, in a child process under limits
(`load_checks.py`): a version that does not load is refused and deleted. Committed versions are
immutable; their files are content-addressed blobs, shared with every other version that has the
same bytes. A gate's verdict can mark a committed version `rejected` (no alias, no new
deployment) until an owner accepts it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from stratus.core.events import EventBus, ModelVersionDeleting, guard_project_deletion
from stratus.core.ids import new_id
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import (
    ProjectScoped,
    metadata_of,
    paginate,
)
from stratus.registry import schemas as s
from stratus.registry.errors import rejected_version, version_not_found
from stratus.registry.flavors import ModelLoadError, detect_flavor, get_flavor, onnx_graph
from stratus.registry.flavors.base import pick_file
from stratus.registry.load_checks import LoadChecker
from stratus.registry.references import parse_ref
from stratus.registry.signatures import Signature
from stratus.registry.tables import AliasEventRow, AliasRow, ModelRow, ModelVersionRow
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo
from stratus.storage.grants import DEFAULT_TTL_SECONDS, ArtifactGrant
from stratus.storage.uploads import FileUpload, declared_file, record_upload

log = logging.getLogger("stratus.registry")

COMPLETE_MARKER = ".stratus-version.json"
ProjectLookup = Callable[[Session, str], str]  # (the caller's session, project name) -> uid
COMMITTED = ("ready", "rejected")


class DatasetVersion(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def state(self) -> str: ...


class DatasetVersions(Protocol):
    """Where lineage finds dataset versions (the data service; the registry does not import it)."""

    def get_version(self, project: str, dataset: str, ref: str) -> DatasetVersion: ...


class RegistryService:
    def __init__(
        self,
        db: Database,
        blobs: Blobs,
        bus: EventBus,
        project_uid: ProjectLookup,
        *,
        datasets: DatasetVersions | None = None,
        load_checker: LoadChecker | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """`datasets` checks lineage's dataset versions; `load_checker` loads each version
        before it is committed, from its files written into a scratch folder in `cache_dir`
        (removed after the check). Without them, neither is checked."""
        self.db = db
        self.blobs = blobs
        self.bus = bus
        self._project_uid = project_uid
        self._datasets = datasets
        self._load_checker = load_checker
        self._cache_dir = cache_dir
        guard_project_deletion(bus, ModelRow.project_uid, ModelRow.name, "models")
        self._models = ProjectScoped(ModelRow, "model")

    # --- models ------------------------------------------------------------------------------

    def create_model(self, project: str, data: s.ModelCreate) -> s.ModelRead:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._models.refuse_duplicate(session, project_uid, project, data.name)
            row = ModelRow(
                name=data.name,
                project_uid=project_uid,
                description=data.description,
                labels=data.labels,
            )
            session.add(row)
            session.flush()
            return self._model_read(session, row, project)

    def list_models(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.ModelRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._models, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._model_read(session, r, p) for r, p in pairs], token

    def get_model(self, project: str, name: str) -> s.ModelRead:
        with self.db.transaction() as session:
            return self._model_read(session, self._model(session, project, name), project)

    def update_model(self, project: str, name: str, data: s.ModelUpdate) -> s.ModelRead:
        with self.db.transaction() as session:
            row = self._model(session, project, name)
            self._models.update(row, data)
            session.flush()
            return self._model_read(session, row, project)

    def delete_model(self, project: str, name: str, force: bool = False) -> None:
        with self.db.transaction() as session:
            row = self._model(session, project, name)
            versions = session.scalars(
                select(ModelVersionRow).where(ModelVersionRow.model_uid == row.uid)
            ).all()
            if versions and not force:
                raise Conflict(
                    f"model {name!r} has {len(versions)} versions: delete them first, "
                    "or delete the model with force"
                )
            self.bus.publish(session, ModelVersionDeleting(row.project_uid, name, None))
            for version in versions:
                self._release_files(session, row.project_uid, version)
            session.delete(row)

    def _model(self, session: Session, project: str, name: str) -> ModelRow:
        return self._models.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _model_read(session: Session, row: ModelRow, project: str) -> s.ModelRead:
        count = session.scalar(
            select(func.count())
            .select_from(ModelVersionRow)
            .where(ModelVersionRow.model_uid == row.uid, ModelVersionRow.state.in_(COMMITTED))
        )
        latest = session.scalar(
            select(func.max(ModelVersionRow.version)).where(
                ModelVersionRow.model_uid == row.uid, ModelVersionRow.state == "ready"
            )
        )
        aliases = {
            a.name: a.version
            for a in session.scalars(select(AliasRow).where(AliasRow.model_uid == row.uid))
        }
        return s.ModelRead(
            metadata=metadata_of(row, project=project),
            spec=s.ModelSpec(description=row.description),
            status=s.ModelStatus(versions=count or 0, latest_version=latest, aliases=aliases),
        )

    # --- versions: pushing -------------------------------------------------------------------

    def create_version(
        self, project: str, model: str, data: s.VersionCreate, *, actor: str, can_trust: bool
    ) -> s.VersionRead:
        """Declare a new version and its files; upload the ones not `stored`, then commit."""
        if data.trusted and not can_trust:
            raise PermissionDenied("only the project's owners may mark a version trusted")
        paths = [f.path for f in data.files]
        if len(set(paths)) != len(paths):
            raise InvalidInput("the same file path is listed twice")
        flavor = data.flavor or detect_flavor(paths)
        get_flavor(flavor)  # an unknown flavor is a clear 400 here, not at deploy time
        signature = None
        if data.signature is not None:
            try:
                signature = Signature.model_validate(data.signature).model_dump(mode="json")
            except ValueError as exc:
                raise InvalidInput(f"signature is not valid: {exc}") from None
        lineage = data.lineage.model_dump()
        if data.lineage.dataset_version is not None:
            lineage["dataset_version"] = self._dataset_version(
                project, data.lineage.dataset_version
            )
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            project_uid = row.project_uid
            number = row.next_version
            row.next_version = number + 1
            version = ModelVersionRow(
                uid=new_id("mv"),
                model_uid=row.uid,
                version=number,
                state="pending",
                flavor=flavor,
                trusted=data.trusted,
                files=[{**f.model_dump(), "stored": False} for f in data.files],
                size=sum(f.size for f in data.files),
                signature=signature,
                metrics=data.metrics,
                params=data.params,
                tags=data.tags,
                lineage=lineage,
                description=data.description,
                card=data.card,
                created_by=actor,
                created_at=utcnow(),
            )
            session.add(version)
            session.flush()
            known = self.blobs.known(session, project_uid, (f.sha256 for f in data.files))
            read = self._version_read(session, version, model, project)
        # Files whose bytes the project already stores need no upload; commit will count them.
        for f in read.files:
            f.stored = f.sha256 in known
        return read

    def _dataset_version(self, project: str, reference: str) -> str:
        """A lineage's dataset version as the NAME:VERSION it names (NAME alone or NAME:latest:
        the newest ready one), refused unless it exists in the project and is committed."""
        if self._datasets is None:
            return reference
        name, _, ref = reference.partition(":")
        missing = NotFound(
            f"dataset version {reference!r} not found in project {project!r}",
            dataset_version=reference,
        )
        if not name or not (ref.isdigit() or ref in ("", "latest")):
            raise InvalidInput(
                f"lineage dataset_version {reference!r}: give NAME:VERSION (a dataset of the "
                "project and one of its version numbers), NAME or NAME:latest"
            )
        try:
            found = self._datasets.get_version(project, name, ref or "latest")
        except NotFound:
            raise missing from None
        if found.state != "ready":
            raise Conflict(f"dataset version {name}:{found.version} is not committed yet")
        return f"{name}:{found.version}"

    def begin_upload(self, project: str, model: str, number: int, path: str) -> FileUpload:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, str(number))
            entry = declared_file(version, path, f"{model}:{number}")
            project_uid, version_uid = row.project_uid, version.uid
        return FileUpload.start(self.blobs, project_uid, version_uid, entry)

    def finish_upload(self, upload: FileUpload) -> s.VersionFile:
        info = upload.writer.commit(expected_sha256=upload.sha256)
        with self.db.transaction() as session:
            version = session.get(ModelVersionRow, upload.version_uid, with_for_update=True)
            return s.VersionFile(**record_upload(self.blobs, session, version, upload, info))

    def commit_version(self, project: str, model: str, number: int) -> s.VersionRead:
        """Make a pending version ready once every file is stored and it loads.

        Raises:
            Conflict: a declared file is not uploaded yet.
            ModelLoadError: the version does not load (it is deleted: a push that fails here
                leaves nothing behind but its number).
        """
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, str(number), for_update=True)
            read = self._version_read(session, version, model, project)
            if version.state != "pending":
                return read
            missing = []
            known = self.blobs.known(session, row.project_uid, (f["sha256"] for f in version.files))
            for entry in version.files:
                if entry["stored"]:
                    continue
                if entry["sha256"] not in known:
                    missing.append(entry["path"])
                    continue
                info = BlobInfo(sha256=entry["sha256"], size=entry["size"])
                self.blobs.acquire(session, row.project_uid, info)
                entry["stored"] = True
            if missing:
                shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                raise Conflict(f"{model}:{number} cannot be committed: upload {shown} first")
            flag_modified(version, "files")
            read = self._version_read(session, version, model, project)
            project_uid, uid = row.project_uid, version.uid
        # Every file is held now (a crash from here on leaves a pending version whose commit
        # can be tried again); load it outside any transaction: it may take a while.
        failure = self._load_failure(project_uid, uid, read, trusted=read.trusted)
        described = self._described(project_uid, read) if failure is None else None
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, str(number), for_update=True)
            if version.state == "pending" and failure is None:
                if described is not None:
                    version.signature = described
                version.state = "ready"
                version.committed_at = utcnow()
                session.flush()
            elif version.state == "pending":
                self._release_files(session, row.project_uid, version)
                session.delete(version)
            if failure is None or version.state != "pending":
                return self._version_read(session, version, model, project)
        raise ModelLoadError(
            f"{model}:{number} does not load, so it was not registered: {failure}",
            model=model,
            version=number,
        )

    def _load_failure(
        self, project_uid: str, uid: str, read: s.VersionRead, *, trusted: bool
    ) -> str | None:
        """Why the version does not load, or None when it does — or when it cannot be tried:
        no load checker, or files that need a trust the version does not have (they are never
        loaded untrusted, not even in a check)."""
        if self._load_checker is None or self._cache_dir is None or not read.flavor:
            return None
        if read.needs_trust and not trusted:
            return None
        folder = self._write_folder(project_uid, uid, read, self._cache_dir)
        try:
            outcome = self._load_checker.check(
                folder, read.flavor, trusted=trusted, signature=read.signature
            )
        finally:  # scratch for the check only: replicas fetch their own copy (`grant`)
            shutil.rmtree(folder, ignore_errors=True)
        if outcome.loaded or outcome.needs_trust:  # a skops file of unknown types, untrusted
            return None
        return outcome.detail

    def _described(self, project_uid: str, read: s.VersionRead) -> dict[str, Any] | None:
        """An ONNX version's signature completed from its graph (inputs and outputs, a
        classifier's classes), read from the stored bytes without loading the model; None
        when there is nothing to add (other flavors, or a signature that lists outputs)."""
        if read.flavor != "onnx" or (read.signature and read.signature.get("outputs")):
            return None
        try:
            file = pick_file([f.path for f in read.files], [".onnx"], "onnx")
            entry = next(f for f in read.files if f.path == file)
            graph = onnx_graph.read_chunks(self.blobs.open(project_uid, entry.sha256))
        except (ModelLoadError, ValueError) as exc:  # the load check speaks for broken files
            log.info("no signature read from the ONNX graph of %s: %s", read.model, exc)
            return None
        return onnx_graph.described(graph, read.signature)

    # --- versions: reading and changing ------------------------------------------------------

    def list_versions(
        self, project: str, model: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.VersionRead], str | None]:
        """Versions, newest first."""
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            stmt = select(ModelVersionRow).where(ModelVersionRow.model_uid == row.uid)
            versions, token = paginate(
                session, stmt, ModelVersionRow.version, limit, page_token, descending=True
            )
            return [self._version_read(session, v, model, project) for v in versions], token

    def get_version(self, project: str, model: str, ref: str) -> s.VersionRead:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            return self._version_read(session, self._version(session, row, ref), model, project)

    def pinned_version(self, project: str, reference: str) -> str:
        """`NAME`, `NAME:VERSION` or `NAME@ALIAS` as the NAME:VERSION it names now, or NotFound
        naming the reference."""
        ref = parse_ref(reference)
        try:
            version = self.get_version(project, ref.model, ref.selector)
        except NotFound:
            raise NotFound(
                f"model version {reference!r} not found in project {project!r}"
            ) from None
        return f"{ref.model}:{version.version}"

    def update_version(
        self, project: str, model: str, ref: str, data: s.VersionUpdate, *, can_trust: bool
    ) -> s.VersionRead:
        if data.trusted is not None and not can_trust:
            raise PermissionDenied(
                "only the project's owners may change whether a version is trusted"
            )
        if data.trusted:
            self._refuse_unloadable_trust(project, model, ref)
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref, for_update=True)
            for field in ("trusted", "tags", "description", "card"):
                value = getattr(data, field)
                if value is not None:
                    setattr(version, field, value)
            session.flush()
            return self._version_read(session, version, model, project)

    def _refuse_unloadable_trust(self, project: str, model: str, ref: str) -> None:
        """Before a version is first trusted, load it trusted (its pickles or code were never
        loaded before): one that does not load is refused, and stays untrusted."""
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref)
            if version.trusted or version.state not in COMMITTED:
                return
            read = self._version_read(session, version, model, project)
            project_uid, uid = row.project_uid, version.uid
        failure = self._load_failure(project_uid, uid, read, trusted=True)
        if failure is not None:
            raise ModelLoadError(
                f"{model}:{read.version} does not load, so it was not marked trusted: {failure}",
                model=model,
                version=read.version,
            )

    # --- versions: gate verdicts -------------------------------------------------------------

    def record_verdict(
        self,
        project: str,
        model: str,
        number: int,
        *,
        passed: bool,
        reason: str,
        checks: list[dict[str, Any]],
        source: str,
    ) -> s.VersionRead:
        """Keep a gate's judgement with the version: a refusal makes it `rejected` (no new
        alias, no new deployment; aliases and endpoints that already use it are left alone),
        a pass makes a rejected version `ready` again. The last verdict stands."""
        verdict = s.Verdict(
            status="passed" if passed else "rejected",
            reason=reason,
            checks=checks,
            source=source,
            time=utcnow(),
        )
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, str(number), for_update=True)
            if version.state not in COMMITTED:
                raise Conflict(f"{model}:{version.version} is not committed yet")
            version.verdict = verdict.model_dump(mode="json")
            version.state = "ready" if passed else "rejected"
            session.flush()
            return self._version_read(session, version, model, project)

    def accept_version(
        self, project: str, model: str, ref: str, data: s.VersionAccept, *, actor: str,
        can_override: bool,
    ) -> s.VersionRead:  # fmt: skip
        """An owner's override of a gate's refusal: the version is `ready` again, and its
        verdict keeps the refusal with who accepted it, when and why."""
        if not can_override:
            raise PermissionDenied("only the project's owners may accept a rejected version")
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref, for_update=True)
            if version.state != "rejected":
                raise Conflict(
                    f"{model}:{version.version} is {version.state}, not rejected: "
                    "there is nothing to accept"
                )
            verdict = s.Verdict.model_validate(version.verdict or {})
            verdict = verdict.model_copy(
                update={
                    "status": "overridden",
                    "override_reason": data.reason,
                    "overridden_by": actor,
                    "overridden_at": utcnow(),
                }
            )
            version.verdict = verdict.model_dump(mode="json")
            version.state = "ready"
            session.flush()
            return self._version_read(session, version, model, project)

    def delete_version(self, project: str, model: str, ref: str, force: bool = False) -> None:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref, for_update=True)
            self.bus.publish(session, ModelVersionDeleting(row.project_uid, model, version.version))
            aliases = session.scalars(
                select(AliasRow).where(
                    AliasRow.model_uid == row.uid, AliasRow.version == version.version
                )
            ).all()
            if aliases and not force:
                names = ", ".join(a.name for a in aliases)
                raise Conflict(
                    f"{model}:{version.version} is behind alias(es) {names}: move them first, "
                    "or delete with force"
                )
            for alias in aliases:
                session.delete(alias)
            self._release_files(session, row.project_uid, version)
            session.delete(version)

    def card(self, project: str, model: str, ref: str) -> str:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            return self._version(session, row, ref).card

    def open_file(
        self, project: str, model: str, ref: str, path: str
    ) -> tuple[s.VersionFile, Iterator[bytes]]:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref)
            entry = next((f for f in version.files if f["path"] == path), None)
            if entry is None or not entry["stored"]:
                raise NotFound(f"{model}:{version.version} has no file {path!r}")
            project_uid = row.project_uid
        return s.VersionFile(**entry), self.blobs.open(project_uid, entry["sha256"])

    def materialize(
        self, project: str, model: str, ref: str, cache_root: Path
    ) -> tuple[s.VersionRead, Path]:
        """The version's files in a local folder (for replicas to load), verified as written.

        The folder is named by the version's uid (versions are immutable, so a complete folder
        is reused as is) and appears only when every file is in place.
        """
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref)
            if version.state not in COMMITTED:
                raise Conflict(f"{model}:{version.version} is not committed yet")
            read = self._version_read(session, version, model, project)
            project_uid, uid = row.project_uid, version.uid
        return read, self._write_folder(project_uid, uid, read, cache_root)

    def grant(
        self, project: str, model: str, ref: str, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> tuple[s.VersionRead, ArtifactGrant]:
        """A committed version and a grant to its files, with which a worker fetches them
        from the store itself (`stratus.storage.grants.fetch`) for `ttl_seconds`."""
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            version = self._version(session, row, ref)
            if version.state not in COMMITTED:
                raise Conflict(f"{model}:{version.version} is not committed yet")
            read = self._version_read(session, version, model, project)
            project_uid = row.project_uid
        files = [(f.path, f.sha256, f.size) for f in read.files]
        return read, self.blobs.grant(project_uid, files, ttl_seconds)

    def _write_folder(
        self, project_uid: str, uid: str, read: s.VersionRead, cache_root: Path
    ) -> Path:
        """The version's files in `cache_root/uid`, written (verified) unless already there."""
        target = cache_root / uid
        # Decrypted model files: private to this user (0600 files in a 0700 folder), however
        # the folder was made before.
        cache_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        cache_root.chmod(0o700)
        if (target / COMPLETE_MARKER).exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{uid}.", dir=cache_root))  # mode 0700
        try:
            for entry in read.files:
                path = staging / entry.path
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with _private_file(path) as f:
                    for chunk in self.blobs.open(project_uid, entry.sha256):
                        f.write(chunk)
            with _private_file(staging / COMPLETE_MARKER) as f:
                f.write(read.model_dump_json().encode())
            try:
                staging.rename(target)
            except OSError:  # another caller finished first: theirs is as good as ours
                if not (target / COMPLETE_MARKER).exists():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def _release_files(self, session: Session, project_uid: str, version: ModelVersionRow) -> None:
        for entry in version.files:
            if entry.get("stored"):
                self.blobs.release(session, project_uid, entry["sha256"])

    def _version(
        self, session: Session, model: ModelRow, ref: str, for_update: bool = False
    ) -> ModelVersionRow:
        """A version by number, by alias, or `latest` (the newest committed one)."""
        stmt = select(ModelVersionRow).where(ModelVersionRow.model_uid == model.uid)
        if ref.isdigit():
            if int(ref) > 2**31:  # past any version, and past what SQLite compares
                raise version_not_found(model.name, ref)
            stmt = stmt.where(ModelVersionRow.version == int(ref))
        elif ref == "latest":
            stmt = stmt.where(ModelVersionRow.state == "ready").order_by(
                ModelVersionRow.version.desc()
            )
        else:
            alias = session.get(AliasRow, (model.uid, ref))
            if alias is None:
                raise version_not_found(model.name, ref)
            stmt = stmt.where(ModelVersionRow.version == alias.version)
        if for_update:
            stmt = stmt.with_for_update()
        version = session.scalars(stmt.limit(1)).first()
        if version is None:
            raise version_not_found(model.name, ref)
        return version

    @staticmethod
    def _version_read(
        session: Session, v: ModelVersionRow, model: str, project: str
    ) -> s.VersionRead:
        aliases = session.scalars(
            select(AliasRow.name).where(
                AliasRow.model_uid == v.model_uid, AliasRow.version == v.version
            )
        ).all()
        paths = [f["path"] for f in v.files]
        needs_trust = get_flavor(v.flavor).unsafe_files(paths) if v.flavor else []
        return s.VersionRead(
            model=model,
            project=project,
            version=v.version,
            state=v.state,
            flavor=v.flavor,
            trusted=v.trusted,
            needs_trust=needs_trust,
            files=[s.VersionFile(**f) for f in v.files],
            size=v.size,
            signature=v.signature,
            metrics=v.metrics or {},
            params=v.params or {},
            tags=v.tags or {},
            lineage=s.Lineage(**(v.lineage or {})),
            description=v.description,
            aliases=sorted(aliases),
            created_at=as_utc(v.created_at),
            created_by=v.created_by,
            committed_at=as_utc(v.committed_at) if v.committed_at else None,
            verdict=s.Verdict.model_validate(v.verdict) if v.verdict else None,
        )

    # --- aliases -----------------------------------------------------------------------------

    def set_alias(
        self, project: str, model: str, alias: str, data: s.AliasSet, *, actor: str
    ) -> s.AliasRead:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            target = self._version(session, row, str(data.version))
            if target.state == "rejected":
                raise rejected_version(model, target.version, target.verdict or {})
            if target.state != "ready":
                raise Conflict(f"{model}:{data.version} is not committed yet")
            current = session.get(AliasRow, (row.uid, alias), with_for_update=True)
            previous = current.version if current else None
            if current is None:
                current = AliasRow(model_uid=row.uid, name=alias, version=data.version)
                session.add(current)
            current.version, current.updated_at, current.updated_by = data.version, utcnow(), actor
            session.add(
                AliasEventRow(
                    model_uid=row.uid,
                    alias=alias,
                    from_version=previous,
                    to_version=data.version,
                    actor=actor,
                    reason=data.reason,
                    time=utcnow(),
                )
            )
            session.flush()
            return _alias_read(current)

    def delete_alias(
        self, project: str, model: str, alias: str, *, actor: str, reason: str
    ) -> None:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            current = session.get(AliasRow, (row.uid, alias), with_for_update=True)
            if current is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            session.add(
                AliasEventRow(
                    model_uid=row.uid,
                    alias=alias,
                    from_version=current.version,
                    to_version=None,
                    actor=actor,
                    reason=reason,
                    time=utcnow(),
                )
            )
            session.execute(
                delete(AliasRow).where(AliasRow.model_uid == row.uid, AliasRow.name == alias)
            )

    def list_aliases(
        self, project: str, model: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.AliasRead], str | None]:
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            stmt = select(AliasRow).where(AliasRow.model_uid == row.uid)
            rows, token = paginate(session, stmt, AliasRow.name, limit, page_token)
            return [_alias_read(a) for a in rows], token

    def alias_history(
        self,
        project: str,
        model: str,
        alias: str | None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.AliasEvent], str | None]:
        """Every move of the model's aliases (or of one), newest first."""
        with self.db.transaction() as session:
            row = self._model(session, project, model)
            stmt = select(AliasEventRow).where(AliasEventRow.model_uid == row.uid)
            if alias is not None:
                stmt = stmt.where(AliasEventRow.alias == alias)
            events, token = paginate(
                session, stmt, AliasEventRow.id, limit, page_token, descending=True
            )
            return [
                s.AliasEvent(
                    alias=e.alias,
                    from_version=e.from_version,
                    to_version=e.to_version,
                    actor=e.actor,
                    reason=e.reason,
                    time=as_utc(e.time),
                )
                for e in events
            ], token


def _private_file(path: Path) -> BinaryIO:
    """A new file only its owner may read (0600 whatever the umask)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def _alias_read(row: AliasRow) -> s.AliasRead:
    return s.AliasRead(
        alias=row.name,
        version=row.version,
        updated_at=as_utc(row.updated_at),
        updated_by=row.updated_by,
    )


__all__: list[Any] = ["FileUpload", "RegistryService"]
