"""Training jobs: submit, read, cancel; the code archive, checkpoints and logs they keep.

A job is submitted with its spec; the instance type is looked up in the catalog (and refused
when it could never fit this backend), a dataset reference is pinned to a version (and an
evaluation's model references to versions it may load), and the job waits in `pending` until
its code archive is uploaded (content-addressed: code uploaded before is not sent again), then
`queued`. The controller (`controller.py`) starts it when there is room; the job's runner
reports back (run id, metrics, an evaluation's results, model version, checkpoints) through
this service with the job's own token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stratus.compute.backend import ComputeBackend
from stratus.compute.instance_types import InstanceCatalog, InstanceType
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.demand import Admission, Demand, Resource
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.events import EventBus, guard_project_deletion
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, metadata_of
from stratus.data.service import DataService
from stratus.iam.principals import Principal
from stratus.jobs import schemas as s
from stratus.jobs.schemas import JobPhase
from stratus.jobs.tables import JobRow, JobStatusRow
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService
from stratus.secrets.schemas import as_environment
from stratus.secrets.service import SecretService
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo, BlobWriter

ProjectLookup = Callable[[Session, str], str]
ACTIVE = (JobPhase.queued.value, JobPhase.running.value)
HOLDING = (JobPhase.pending.value, *ACTIVE)  # what a quota counts


@dataclass
class BlobUpload:
    """An upload in flight: bytes go to `writer`; `finish` records them."""

    writer: BlobWriter
    project_uid: str
    job_uid: str
    expected_sha256: str | None = None

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def abort(self) -> None:
        self.writer.abort()


@dataclass(frozen=True)
class JobUsage:
    """What metering reads of a job: its size and how long it has run, in all."""

    uid: str
    project: str
    name: str
    instance_type: str
    spot: bool
    seconds: float
    preemptions: int
    model_version: str | None
    preempted_seconds: float = 0.0  # of `seconds`, in attempts a preemption cut short


@dataclass(frozen=True)
class ActiveJob:
    """What the controller needs of a queued or running job."""

    uid: str
    project: str
    name: str
    spec: s.JobSpec
    phase: JobPhase
    principal_kind: str
    principal_uid: str
    principal_name: str
    queued_at: datetime | None
    started_at: datetime | None
    attempts: int
    handle: dict[str, Any] | None
    stop_reason: str | None
    completed: bool
    has_checkpoint: bool
    instance: InstanceType


def default_name(data: s.JobCreate) -> str:
    if data.trainer is not None:
        base = data.trainer.estimator.rsplit(".", 1)[-1]
    elif data.evaluation is not None:
        base = "evaluate-" + re.split(r"[:@]", data.evaluation.models[0])[0]
    elif data.batch_predict is not None:
        base = "predict-" + re.split(r"[:@]", data.batch_predict.model)[0]
    else:
        assert data.code is not None
        base = data.code.entrypoint.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40] or "job"
    return f"{base}-{secrets.token_hex(3)}"


class JobService:
    def __init__(
        self,
        db: Database,
        blobs: Blobs,
        bus: EventBus,
        data: DataService,
        catalog: InstanceCatalog,
        backend: ComputeBackend,
        *,
        registry: RegistryService,
        project_uid: ProjectLookup,
        project_name: ProjectLookup,
        admission: Admission | None = None,
        secrets: SecretService | None = None,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.admission = admission or Admission()  # quotas and budgets, registered above
        self.blobs = blobs
        self.data = data
        self.registry = registry
        self.catalog = catalog
        self.backend = backend
        self._project_uid = project_uid
        self._project_names = project_name
        self._jobs = ProjectScoped(JobRow, "job")
        self.on_change: Callable[[], None] = lambda: None
        guard_project_deletion(bus, JobRow.project_uid, JobRow.name, "training jobs")

    # --- submitting ----------------------------------------------------------------------------

    def secret_values(self, project: str, refs: list[str]) -> dict[str, str]:
        """{variable: value} of the secrets a job's spec names (NotFound: one was deleted)."""
        if not refs or self.secrets is None:
            return {}
        return self.secrets.resolve(project, as_environment(refs))

    def submit(
        self, project: str, data: s.JobCreate, principal: Principal
    ) -> tuple[s.JobRead, bool]:
        """Create a job; (the job, whether its code archive must still be uploaded)."""
        instance = self.catalog.get(data.instance_type)
        capacity = self.backend.capacity()
        if instance.vcpus > capacity.vcpus or instance.memory_bytes > capacity.memory_bytes:
            raise InvalidInput(
                f"instance type {instance.name} ({instance.vcpus:g} vCPU, "
                f"{instance.memory_gib:g} GiB) can never run here: the {self.backend.name} "
                f"backend has {capacity.vcpus:g} vCPU and "
                f"{capacity.memory_bytes / 2**30:.1f} GiB for jobs"
            )
        if instance.gpus > capacity.gpus:
            raise InvalidInput(
                f"instance type {instance.name} needs {instance.gpus} GPU; the "
                f"{self.backend.name} backend has {capacity.gpus}"
            )
        variables = as_environment(data.secrets)
        clash = sorted(set(variables) & set(data.env))
        if clash:
            raise InvalidInput(
                f"{', '.join(clash)}: given both in env and as a secret; give each variable once"
            )
        if self.secrets is not None:
            self.secrets.check(project, set(variables.values()))
        dataset = None
        if data.dataset is not None:
            name, _, version = data.dataset.partition(":")
            if not name or (version and not version.isdigit()):
                raise InvalidInput(f"dataset {data.dataset!r}: use NAME or NAME:VERSION")
            pinned = self.data.get_version(project, name, version or "latest")
            if pinned.state != "ready":
                raise Conflict(f"dataset {name}:{pinned.version} is not committed yet")
            dataset = f"{name}:{pinned.version}"
        evaluation = None
        if data.evaluation is not None:
            models = self._pin_models(project, data.evaluation.models)
            evaluation = data.evaluation.model_copy(update={"models": models})
        batch_predict = None
        if data.batch_predict is not None:
            (model,) = self._pin_models(project, [data.batch_predict.model])
            batch_predict = data.batch_predict.model_copy(update={"model": model})
            if dataset is not None and dataset.partition(":")[0] == batch_predict.output_dataset:
                raise InvalidInput(
                    f"the output dataset {batch_predict.output_dataset!r} is the input: "
                    "predictions go to another dataset"
                )
        spec = s.JobSpec(
            instance_type=instance.name,
            spot=data.spot,
            code=data.code,
            trainer=data.trainer,
            evaluation=evaluation,
            batch_predict=batch_predict,
            dataset=dataset,
            experiment=data.experiment or "jobs",
            model=data.model,
            env=data.env,
            secrets=data.secrets,
            timeout_seconds=data.timeout_seconds,
            grace_seconds=data.grace_seconds,
            max_retries=data.max_retries,
        )
        name = data.name or default_name(data)
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._jobs.refuse_duplicate(session, project_uid, project, name)
            row = JobRow(
                name=name,
                project_uid=project_uid,
                labels=data.labels,
                spec=spec.model_dump(mode="json"),
                principal_kind=principal.kind,
                principal_uid=principal.uid,
                created_by=principal.subject,
            )
            session.add(row)
            session.flush()
            needs_code = False
            if data.code is not None:
                known = self.blobs.known(session, project_uid, [data.code.sha256])
                if data.code.sha256 in known:
                    self._acquire_code(session, project_uid, data.code)
                else:
                    needs_code = True
            now = utcnow()
            status = JobStatusRow(
                job_uid=row.uid,
                phase=JobPhase.pending.value if needs_code else JobPhase.queued.value,
                message="waiting for the code archive" if needs_code else "waiting for room",
                code_stored=not needs_code,
                queued_at=None if needs_code else now,
                updated_at=now,
            )
            session.add(status)
            session.flush()
            self.admission.check(
                session,
                Demand(
                    project,
                    project_uid,
                    "job",
                    {
                        Resource.jobs: 1,
                        Resource.vcpus: instance.vcpus,
                        Resource.memory_gib: instance.memory_gib,
                        Resource.gpus: instance.gpus,
                    },
                ),
            )
            read = self._read(session, row, status, project)
        if not needs_code:
            self.on_change()
        return read, needs_code

    def capacity_in_use(self, session: Session, project_uid: str) -> dict[Resource, float]:
        """What the project's jobs hold: those pending, queued or running, and their sizes."""
        specs = session.scalars(
            select(JobRow.spec)
            .join(JobStatusRow, JobStatusRow.job_uid == JobRow.uid)
            .where(JobRow.project_uid == project_uid, JobStatusRow.phase.in_(HOLDING))
        ).all()
        use = {Resource.jobs: float(len(specs))}
        for spec in specs:
            try:
                instance = self.catalog.get(str(spec["instance_type"]))
            except InvalidInput:  # a type gone from the catalog: counted as a job only
                continue
            use[Resource.vcpus] = use.get(Resource.vcpus, 0.0) + instance.vcpus
            use[Resource.memory_gib] = use.get(Resource.memory_gib, 0.0) + instance.memory_gib
            use[Resource.gpus] = use.get(Resource.gpus, 0.0) + instance.gpus
        return use

    def begin_code_upload(self, project: str, name: str) -> BlobUpload:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            spec = s.JobSpec.model_validate(row.spec)
            if spec.code is None:
                raise Conflict(f"job {name!r} runs no code of yours: it has no code to upload")
            if status.code_stored:
                raise Conflict(f"job {name!r} has its code already")
            project_uid, job_uid, sha = row.project_uid, row.uid, spec.code.sha256
        return BlobUpload(self.blobs.writer(project_uid), project_uid, job_uid, sha)

    def finish_code_upload(self, upload: BlobUpload) -> s.JobRead:
        info = upload.writer.commit(expected_sha256=upload.expected_sha256)
        with self.db.transaction() as session:
            row = session.get(JobRow, upload.job_uid)
            status = session.get(JobStatusRow, upload.job_uid, with_for_update=True)
            if row is None or status is None:
                raise NotFound("the job was deleted during the upload")
            if not status.code_stored:
                self.blobs.acquire(session, row.project_uid, info)
                status.code_stored = True
                if status.phase == JobPhase.pending.value:
                    status.phase = JobPhase.queued.value
                    status.message = "waiting for room"
                    status.queued_at = utcnow()
                status.updated_at = utcnow()
            project = self._project_name(session, row)
            read = self._read(session, row, status, project)
        self.on_change()
        return read

    def _acquire_code(self, session: Session, project_uid: str, code: s.CodeSpec) -> None:
        self.blobs.acquire(session, project_uid, BlobInfo(sha256=code.sha256, size=code.size))

    # --- reading -------------------------------------------------------------------------------

    def list_jobs(
        self,
        project: str | None,
        selector: str | None,
        limit: int | None,
        page_token: str | None,
        phase: str | None = None,
    ) -> tuple[list[s.JobRead], str | None]:
        if phase is not None and phase not in {p.value for p in JobPhase}:
            raise InvalidInput(
                f"phase {phase!r} is not one of {', '.join(p.value for p in JobPhase)}"
            )
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._jobs, session, project, self._project_uid, selector, limit, page_token
            )
            reads = []
            for row, in_project in pairs:
                status = session.get(JobStatusRow, row.uid)
                assert status is not None
                if phase is None or status.phase == phase:
                    reads.append(self._read(session, row, status, in_project))
            return reads, token

    def get(self, project: str, name: str) -> s.JobRead:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            return self._read(session, row, status, project)

    def counts_by_phase(self) -> dict[tuple[str, str], int]:
        """(project, phase) → how many jobs, for the platform's gauges."""
        with self.db.transaction() as session:
            found = session.execute(
                select(JobRow.project_uid, JobStatusRow.phase, func.count())
                .join(JobStatusRow, JobStatusRow.job_uid == JobRow.uid)
                .group_by(JobRow.project_uid, JobStatusRow.phase)
            ).all()
            names: dict[str, str] = {}
            counts: dict[tuple[str, str], int] = {}
            for project_uid, phase, count in found:
                if project_uid not in names:
                    names[project_uid] = self._project_names(session, project_uid)
                counts[(names[project_uid], phase)] = int(count)
            return counts

    def instance_types(self) -> list[s.InstanceTypeRead]:
        return [s.InstanceTypeRead(**t.model_dump()) for t in self.catalog.list()]

    # --- changing ------------------------------------------------------------------------------

    def cancel(self, project: str, name: str) -> s.JobRead:
        """Stop a job: a waiting one is cancelled at once, a running one once it has stopped."""
        with self.db.transaction() as session:
            row, status = self._job(session, project, name, for_update=True)
            phase = JobPhase(status.phase)
            if phase.finished:
                raise Conflict(f"job {name!r} has already {phase.value}")
            if phase == JobPhase.running:
                status.stop_reason = "cancel"
                status.message = "cancelling: stopping the process"
            else:
                status.phase = JobPhase.cancelled.value
                status.message = "cancelled before it started"
                status.finished_at = utcnow()
            status.updated_at = utcnow()
            read = self._read(session, row, status, project)
        self.on_change()
        return read

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name, for_update=True)
            if status.phase == JobPhase.running.value:
                raise Conflict(f"job {name!r} is running: cancel it first")
            spec = s.JobSpec.model_validate(row.spec)
            if spec.code is not None and status.code_stored:
                self.blobs.release(session, row.project_uid, spec.code.sha256)
            for digest in (status.checkpoint_sha256, status.log_sha256):
                if digest:
                    self.blobs.release(session, row.project_uid, digest)
            session.delete(row)

    # --- what the job's runner sends -----------------------------------------------------------

    def report(self, project: str, name: str, body: s.JobReport) -> s.JobRead:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name, for_update=True)
            if status.phase != JobPhase.running.value:
                raise Conflict(f"job {name!r} is not running")
            if body.run_id is not None:
                status.run_id = body.run_id
            if body.model_version is not None:
                status.model_version = body.model_version
            if body.metrics is not None:
                status.metrics = {**(status.metrics or {}), **body.metrics}
            if body.evaluations is not None:
                status.evaluations = {**(status.evaluations or {}), **body.evaluations}
            if body.message is not None:
                status.message = body.message
            if body.progress is not None:
                status.progress = body.progress.model_dump(mode="json")
            if body.dataset_version is not None:
                status.dataset_version = body.dataset_version
            if body.completed:
                status.completed = True
            status.updated_at = utcnow()
            return self._read(session, row, status, project)

    def begin_checkpoint(self, project: str, name: str) -> BlobUpload:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            if status.phase != JobPhase.running.value:
                raise Conflict(f"job {name!r} is not running: only a running job saves checkpoints")
            project_uid, job_uid = row.project_uid, row.uid
        return BlobUpload(self.blobs.writer(project_uid), project_uid, job_uid)

    def finish_checkpoint(self, upload: BlobUpload, step: int | None) -> s.CheckpointRead:
        info = upload.writer.commit()
        with self.db.transaction() as session:
            row = session.get(JobRow, upload.job_uid)
            status = session.get(JobStatusRow, upload.job_uid, with_for_update=True)
            if row is None or status is None:
                raise NotFound("the job was deleted during the upload")
            self.blobs.acquire(session, row.project_uid, info, charged=False)
            if status.checkpoint_sha256:
                self.blobs.release(session, row.project_uid, status.checkpoint_sha256)
            status.checkpoint_sha256, status.checkpoint_size = info.sha256, info.size
            status.checkpoint_at, status.checkpoint_step = utcnow(), step
            status.updated_at = utcnow()
            checkpoint = _checkpoint_of(status)
            assert checkpoint is not None
            return checkpoint

    def open_checkpoint(self, project: str, name: str) -> tuple[s.CheckpointRead, Iterator[bytes]]:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            checkpoint = _checkpoint_of(status)
            if checkpoint is None:
                raise NotFound(f"job {name!r} has saved no checkpoint")
            project_uid = row.project_uid
        return checkpoint, self.blobs.open(project_uid, checkpoint.sha256)

    def open_code(self, project: str, name: str) -> tuple[int, Iterator[bytes]]:
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            spec = s.JobSpec.model_validate(row.spec)
            if spec.code is None or not status.code_stored:
                raise NotFound(f"job {name!r} has no code archive")
            project_uid = row.project_uid
        return spec.code.size, self.blobs.open(project_uid, spec.code.sha256)

    def read_log(self, project: str, name: str, offset: int) -> tuple[bytes, bool]:
        """Log bytes from `offset` (of every attempt so far), and whether the job has finished
        (so a follower knows when to stop)."""
        if offset < 0:
            raise InvalidInput("offset must not be negative")
        with self.db.transaction() as session:
            row, status = self._job(session, project, name)
            handle, stored, size = status.handle, status.log_sha256, status.log_size
            finished = JobPhase(status.phase).finished
            project_uid = row.project_uid
        chunks: list[bytes] = []
        if stored and offset < size:
            kept = b"".join(self.blobs.open(project_uid, stored))
            chunks.append(kept[offset:])
        if handle is not None:
            live_offset = max(0, offset - size)
            chunks.append(
                self.backend.read_job_log(self.backend.job_from_record(handle), live_offset)
            )
        return b"".join(chunks), finished

    # --- what the controller uses --------------------------------------------------------------

    def active(self) -> list[ActiveJob]:
        with self.db.transaction() as session:
            found = session.execute(
                select(JobRow, JobStatusRow)
                .join(JobStatusRow, JobStatusRow.job_uid == JobRow.uid)
                .where(JobStatusRow.phase.in_(ACTIVE))
            ).all()
            names: dict[str, str] = {}
            active = []
            for row, status in found:
                if row.project_uid not in names:
                    names[row.project_uid] = self._project_name(session, row)
                spec = s.JobSpec.model_validate(row.spec)
                active.append(
                    ActiveJob(
                        uid=row.uid,
                        project=names[row.project_uid],
                        name=row.name,
                        spec=spec,
                        phase=JobPhase(status.phase),
                        principal_kind=row.principal_kind,
                        principal_uid=row.principal_uid,
                        principal_name=row.created_by.partition(":")[2],
                        queued_at=as_utc(status.queued_at) if status.queued_at else None,
                        started_at=as_utc(status.started_at) if status.started_at else None,
                        attempts=status.attempts,
                        handle=status.handle,
                        stop_reason=status.stop_reason,
                        completed=status.completed,
                        has_checkpoint=status.checkpoint_sha256 is not None,
                        instance=self.catalog.get(spec.instance_type),
                    )
                )
            return active

    def usage(self, since: datetime) -> list[JobUsage]:
        """Every job that ran at some time after `since` (running now, or stopped since), with
        the seconds it has run over all its attempts until now: what metering reads."""
        now = utcnow()
        with self.db.transaction() as session:
            found = session.execute(
                select(JobRow, JobStatusRow)
                .join(JobStatusRow, JobStatusRow.job_uid == JobRow.uid)
                .where(
                    (JobStatusRow.phase == JobPhase.running.value)
                    | (JobStatusRow.updated_at >= since)
                )
            ).all()
            names: dict[str, str] = {}
            usage = []
            for row, status in found:
                if row.project_uid not in names:
                    names[row.project_uid] = self._project_name(session, row)
                spec = s.JobSpec.model_validate(row.spec)
                seconds = status.seconds_run
                if status.phase == JobPhase.running.value and status.started_at is not None:
                    seconds += max(0.0, (now - as_utc(status.started_at)).total_seconds())
                usage.append(
                    JobUsage(
                        uid=row.uid,
                        project=names[row.project_uid],
                        name=row.name,
                        instance_type=spec.instance_type,
                        spot=spec.spot,
                        seconds=seconds,
                        preemptions=status.preemptions,
                        model_version=status.model_version,
                        preempted_seconds=status.preempted_seconds or 0.0,
                    )
                )
            return usage

    def preemptions(self, project: str, since: datetime) -> int:
        """How many times the project's jobs that ran since `since` were preempted."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            total = session.scalar(
                select(func.coalesce(func.sum(JobStatusRow.preemptions), 0))
                .join(JobRow, JobStatusRow.job_uid == JobRow.uid)
                .where(JobRow.project_uid == project_uid, JobStatusRow.updated_at >= since)
            )
            return int(total or 0)

    def models_made(self, project: str, names: Sequence[str]) -> dict[str, str]:
        """The model version (NAME:N) each of these jobs registered, for those that did."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            rows = session.execute(
                select(JobRow.name, JobStatusRow.model_version)
                .join(JobStatusRow, JobStatusRow.job_uid == JobRow.uid)
                .where(JobRow.project_uid == project_uid, JobRow.name.in_(list(names)))
            ).all()
            return {name: version for name, version in rows if version}

    def mark_started(self, uid: str, handle: dict[str, Any], enforced_by: str) -> None:
        with self.db.transaction() as session:
            status = self._status(session, uid)
            now = utcnow()
            status.phase, status.handle, status.enforced_by = "running", handle, enforced_by
            status.attempts += 1
            status.started_at, status.exit_code = now, None
            status.stop_reason, status.completed = None, False
            resumed = (
                f" (resuming from checkpoint step {status.checkpoint_step})"
                if (status.checkpoint_sha256 and status.checkpoint_step is not None)
                else (" (resuming from its checkpoint)" if status.checkpoint_sha256 else "")
            )
            status.message = f"running, attempt {status.attempts}{resumed}"
            status.updated_at = now

    def mark_stopping(self, uid: str, reason: str, message: str) -> None:
        with self.db.transaction() as session:
            status = self._status(session, uid)
            status.stop_reason, status.message = reason, message
            status.updated_at = utcnow()

    def mark_exited(
        self,
        uid: str,
        *,
        phase: JobPhase,
        exit_code: int | None,
        message: str,
        log: bytes,
        preempted: bool = False,
    ) -> None:
        """The attempt is over: keep its log, free its handle, and land in `phase` (queued again
        for a preempted or retried job)."""
        with self.db.transaction() as session:
            row = session.get(JobRow, uid)
            status = self._status(session, uid)
            if row is None:
                return
            now = utcnow()
            if status.started_at is not None:
                attempt = max(0.0, (now - as_utc(status.started_at)).total_seconds())
                status.seconds_run += attempt
                if preempted:  # counted with its time, in the same transaction
                    status.preemptions += 1
                    status.preempted_seconds = (status.preempted_seconds or 0.0) + attempt
            elif preempted:
                status.preemptions += 1
            if log:
                kept = b""
                if status.log_sha256:
                    kept = b"".join(self.blobs.open(row.project_uid, status.log_sha256))
                info = self.blobs.write(row.project_uid, [kept, log])
                self.blobs.acquire(session, row.project_uid, info, charged=False)
                if status.log_sha256:
                    self.blobs.release(session, row.project_uid, status.log_sha256)
                status.log_sha256, status.log_size = info.sha256, info.size
            status.handle, status.exit_code, status.stop_reason = None, exit_code, None
            status.phase, status.message, status.updated_at = phase.value, message, now
            if phase == JobPhase.queued:
                status.queued_at = now
                status.completed = False
            if phase.finished:
                status.finished_at = now

    # --- helpers -------------------------------------------------------------------------------

    def _pin_models(self, project: str, references: list[str]) -> list[str]:
        """Each model reference as the NAME:VERSION it names now (once each, in order), refusing
        versions that are not committed or would run code without being trusted."""
        pinned: list[str] = []
        for reference in references:
            ref = parse_ref(reference)
            version = self.registry.get_version(project, ref.model, ref.selector)
            exact = f"{ref.model}:{version.version}"
            if version.state == "pending":  # a rejected version may still be evaluated
                raise Conflict(f"{exact} is not committed yet")
            if version.needs_trust and not version.trusted:
                raise Conflict(
                    f"{exact} loads code ({', '.join(version.needs_trust)}): an owner must trust "
                    f"it before a job may load it (stratus models trust {exact})"
                )
            if exact not in pinned:
                pinned.append(exact)
        return pinned

    def _job(
        self, session: Session, project: str, name: str, for_update: bool = False
    ) -> tuple[JobRow, JobStatusRow]:
        row = self._jobs.find(session, self._project_uid(session, project), project, name)
        status = session.get(JobStatusRow, row.uid, with_for_update=for_update)
        assert status is not None
        return row, status

    @staticmethod
    def _status(session: Session, uid: str) -> JobStatusRow:
        status = session.get(JobStatusRow, uid, with_for_update=True)
        if status is None:
            raise NotFound(f"job {uid} is gone")
        return status

    def _project_name(self, session: Session, row: JobRow) -> str:
        return self._project_names(session, row.project_uid)

    def _read(self, session: Session, row: JobRow, status: JobStatusRow, project: str) -> s.JobRead:
        spec = s.JobSpec.model_validate(row.spec)
        instance = self.catalog.get(spec.instance_type)
        seconds = status.seconds_run
        if status.phase == JobPhase.running.value and status.started_at is not None:
            seconds += max(0.0, (utcnow() - as_utc(status.started_at)).total_seconds())
        rate = instance.spot_price_per_hour if spec.spot else instance.price_per_hour
        return s.JobRead(
            metadata=metadata_of(row, project=project),
            spec=spec,
            status=s.JobStatus(
                phase=JobPhase(status.phase),
                message=status.message,
                attempts=status.attempts,
                preemptions=status.preemptions,
                preempted_seconds=round(status.preempted_seconds or 0.0, 3),
                limits=s.Limits(
                    vcpus=instance.vcpus,
                    memory_bytes=instance.memory_bytes,
                    gpus=instance.gpus,
                    enforced_by=status.enforced_by,
                ),
                queued_at=as_utc(status.queued_at) if status.queued_at else None,
                started_at=as_utc(status.started_at) if status.started_at else None,
                finished_at=as_utc(status.finished_at) if status.finished_at else None,
                exit_code=status.exit_code,
                node=str(status.handle.get("node") or "") or None
                if status.phase == JobPhase.running and status.handle
                else None,
                checkpoint=_checkpoint_of(status),
                run_id=status.run_id,
                model_version=status.model_version,
                metrics=status.metrics or {},
                evaluations=status.evaluations or {},
                progress=s.Progress.model_validate(status.progress) if status.progress else None,
                dataset_version=status.dataset_version,
                cost=round(seconds / 3600 * rate, 6),
            ),
        )


def _checkpoint_of(status: JobStatusRow) -> s.CheckpointRead | None:
    if status.checkpoint_sha256 is None or status.checkpoint_at is None:
        return None
    return s.CheckpointRead(
        sha256=status.checkpoint_sha256,
        size=status.checkpoint_size or 0,
        saved_at=as_utc(status.checkpoint_at),
        step=status.checkpoint_step,
    )
