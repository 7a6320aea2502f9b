"""Pipelines and their runs: apply a spec, start runs (by hand, on a schedule, on a new dataset
version, from a webhook, or when an alert fires), read them, cancel or resume them.

A run copies the pipeline's spec and pins every dataset its steps name to a version when it
starts, so it is reproducible; the controller (`controller.py`) carries its steps out one by
one and records each step's state, timings, outputs and log here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from stratus.core.events import EventBus, guard_project_deletion
from stratus.core.ids import new_id
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, metadata_of, paginate
from stratus.data.service import DataService
from stratus.iam.principals import Principal
from stratus.jobs.service import JobService
from stratus.pipelines import schemas as s
from stratus.pipelines.schemas import RunState, StepState, TriggerKind
from stratus.pipelines.tables import PipelineRow, PipelineRunRow, PipelineStepRow
from stratus.secrets.schemas import as_environment
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo, BlobWriter

log = logging.getLogger("stratus.pipelines")

ProjectLookup = Callable[[Session, str], str]
WEBHOOK_HEADER = "x-stratus-webhook-secret"
LOG_LIMIT = 200_000  # characters of a step's log kept


def webhook_path(project: str, pipeline: str) -> str:
    return f"/api/v1/webhooks/projects/{project}/pipelines/{pipeline}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def next_time(schedule: str, after: datetime) -> datetime:
    from croniter import croniter

    result: datetime = croniter(schedule, after).get_next(datetime)
    return result


@dataclass(frozen=True)
class ActiveRun:
    """What the controller needs of a run that is queued or running."""

    uid: str
    project: str
    pipeline: str
    number: int
    state: RunState
    spec: s.PipelineSpec
    datasets: dict[str, int]
    principal: Principal
    steps: list[StepView]
    trigger: str = "manual"


@dataclass(frozen=True)
class StepView:
    uid: str
    position: int
    name: str
    type: str
    state: StepState
    attempts: int
    outputs: dict[str, Any]
    started_at: datetime | None


class PipelineService:
    def __init__(
        self,
        db: Database,
        blobs: Blobs,
        bus: EventBus,
        data: DataService,
        jobs: JobService,
        project_uid: ProjectLookup,
        project_name: ProjectLookup,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.data = data
        self.jobs = jobs
        self._project_uid = project_uid
        self._project_name = project_name
        self._pipelines = ProjectScoped(PipelineRow, "pipeline")
        self.on_change: Callable[[], None] = lambda: None
        guard_project_deletion(bus, PipelineRow.project_uid, PipelineRow.name, "pipelines")

    # --- pipelines ---------------------------------------------------------------------------

    def apply(
        self, project: str, data: s.PipelineApply, principal: Principal
    ) -> tuple[s.PipelineRead, bool]:
        """Create or replace a pipeline; (it, whether it is new). A webhook secret is made
        (and shown once) when the webhook trigger is first enabled."""
        spec = s.PipelineSpec(
            description=data.description, triggers=data.triggers, steps=data.steps
        )
        named = {
            name
            for step in data.steps
            for name in as_environment(list(getattr(step, "secrets", ()))).values()
        }
        if named and self.jobs.secrets is not None:  # refused now, not at the step's turn
            self.jobs.secrets.check(project, named)
        sizes = {
            step.code.sha256: step.code.size
            for step in data.steps
            if isinstance(step, s.TrainStep | s.CustomStep) and step.code is not None
        }
        codes = sorted(sizes)
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            known = self.blobs.known(session, project_uid, codes)
            missing = [
                c for c in codes if c not in known and not self.blobs.store.exists(project_uid, c)
            ]
            if missing:
                raise Conflict(
                    f"upload the code archive {missing[0][:12]}… first "
                    f"(PUT .../pipelines/{data.name}/code/{missing[0]})"
                )
            row = session.scalar(
                select(PipelineRow).where(
                    PipelineRow.project_uid == project_uid, PipelineRow.name == data.name
                )
            )
            created = row is None
            if row is None:
                row = PipelineRow(name=data.name, project_uid=project_uid, code=[])
                session.add(row)
            row.labels = data.labels
            row.spec = spec.model_dump(mode="json")
            row.principal_kind, row.principal_uid = principal.kind, principal.uid
            row.applied_by = principal.subject
            for digest in codes:  # hold the new code before letting the old go
                if digest not in (row.code or []):
                    info = BlobInfo(sha256=digest, size=sizes[digest])
                    self.blobs.acquire(session, project_uid, info)
            for digest in row.code or []:
                if digest not in codes:
                    self.blobs.release(session, project_uid, digest)
            row.code = codes
            secret = None
            if data.triggers.webhook and row.webhook_secret_sha256 is None:
                secret = "whs_" + secrets.token_urlsafe(32)
                row.webhook_secret_sha256 = _hash(secret)
            elif not data.triggers.webhook:
                row.webhook_secret_sha256 = None
            row.next_run_at = (
                next_time(data.triggers.schedule, utcnow()) if data.triggers.schedule else None
            )
            session.flush()
            read = self._read(session, row, project)
            read.webhook_secret = secret
        self.on_change()
        return read, created

    def code_writer(self, project: str) -> BlobWriter:
        """Where a code archive a step names is streamed before `apply` (the caller commits it
        against its SHA-256); `apply` then takes a reference to it."""
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
        return self.blobs.writer(project_uid)

    def open_code(self, project: str, name: str, sha256: str) -> tuple[int, Iterator[bytes]]:
        """A code archive the pipeline's steps name: (its size, its verified chunks); what
        `stratus export iac` writes back as a folder."""
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            project_uid = row.project_uid
            spec = s.PipelineSpec.model_validate(row.spec)
        sizes = {
            step.code.sha256: step.code.size
            for step in spec.steps
            if isinstance(step, s.TrainStep | s.CustomStep) and step.code is not None
        }
        if sha256 not in sizes:
            raise NotFound(f"pipeline {name!r} names no code archive {sha256[:12]}…")
        return sizes[sha256], self.blobs.open(project_uid, sha256)

    def rotate_webhook(self, project: str, name: str) -> s.PipelineRead:
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            spec = s.PipelineSpec.model_validate(row.spec)
            if not spec.triggers.webhook:
                raise Conflict(f"pipeline {name!r} has no webhook trigger: enable it in its spec")
            secret = "whs_" + secrets.token_urlsafe(32)
            row.webhook_secret_sha256 = _hash(secret)
            session.flush()
            read = self._read(session, row, project)
            read.webhook_secret = secret
            return read

    def list_pipelines(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.PipelineRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._pipelines, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._read(session, r, p) for r, p in pairs], token

    def get(self, project: str, name: str) -> s.PipelineRead:
        with self.db.transaction() as session:
            return self._read(session, self._pipeline(session, project, name), project)

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            active = session.scalar(
                select(func.count()).where(
                    PipelineRunRow.pipeline_uid == row.uid,
                    PipelineRunRow.state.in_([RunState.queued.value, RunState.running.value]),
                )
            )
            if active:
                raise Conflict(f"pipeline {name!r} has a run in progress: cancel it first")
            for digest in row.code or []:
                self.blobs.release(session, row.project_uid, digest)
            session.delete(row)

    # --- starting runs -----------------------------------------------------------------------

    def start_run(
        self,
        project: str,
        name: str,
        *,
        trigger: TriggerKind,
        detail: dict[str, Any] | None = None,
        datasets: dict[str, int] | None = None,
        actor: str,
        trigger_key: str | None = None,
    ) -> s.RunRead:
        """Queue a run of the pipeline's current spec: the one entry point of every trigger
        (manual, schedule, dataset, webhook, alert). A `trigger_key` starts one run at most:
        called again with it (a redelivered trigger), this answers the run it started."""
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            existing = self._triggered(session, row, trigger_key)
            if existing is not None:
                return self._run_read(session, existing, name, project)
            spec = s.PipelineSpec.model_validate(row.spec)
        pinned = self._pin_datasets(project, spec, datasets or {})  # reads in its own transactions
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            existing = self._triggered(session, row, trigger_key)
            if existing is not None:
                return self._run_read(session, existing, name, project)
            if row.spec != spec.model_dump(mode="json"):  # applied again meanwhile
                spec = s.PipelineSpec.model_validate(row.spec)
            number = row.next_number
            row.next_number = number + 1
            run = PipelineRunRow(
                uid=new_id("prun"),
                pipeline_uid=row.uid,
                number=number,
                state=RunState.queued.value,
                spec=row.spec,
                trigger=trigger.value,
                trigger_detail=detail or {},
                trigger_key=trigger_key,
                datasets=pinned,
                message="queued",
                created_at=utcnow(),
                created_by=actor,
            )
            session.add(run)
            session.flush()
            for position, step in enumerate(spec.steps):
                session.add(
                    PipelineStepRow(
                        uid=new_id("pstp"),
                        run_uid=run.uid,
                        position=position,
                        name=step.name,
                        type=step.type,
                        state=StepState.pending.value,
                    )
                )
            session.flush()
            read = self._run_read(session, run, name, project)
        self.on_change()
        return read

    @staticmethod
    def _triggered(
        session: Session, row: PipelineRow, trigger_key: str | None
    ) -> PipelineRunRow | None:
        if trigger_key is None:
            return None
        return session.scalar(
            select(PipelineRunRow).where(
                PipelineRunRow.pipeline_uid == row.uid, PipelineRunRow.trigger_key == trigger_key
            )
        )

    def _pin_datasets(
        self, project: str, spec: s.PipelineSpec, given: dict[str, int]
    ) -> dict[str, int]:
        pinned: dict[str, int] = {}
        for step in spec.steps:
            reference = getattr(step, "dataset", None)
            if not reference:
                continue
            name, _, version = reference.partition(":")
            if version:
                if not version.isdigit():
                    raise InvalidInput(f"step {step.name!r}: dataset {reference!r} is not NAME:N")
                continue  # pinned in the spec itself
            if name in pinned:
                continue
            if name in given:
                found = self.data.get_version(project, name, str(given[name]))
            else:
                found = self.data.get_version(project, name, "latest")
            pinned[name] = found.version
        return pinned

    def trigger_webhook(
        self, project: str, name: str, secret: str | None, call: s.WebhookCall
    ) -> s.RunRead:
        """A webhook call: the secret is the credential (a wrong or missing one is a 401 that
        says no more than that)."""
        with self.db.transaction() as session:
            try:
                row = self._pipeline(session, project, name)
            except NotFound:
                row = None
            stored = row.webhook_secret_sha256 if row is not None else None
            given = _hash(secret) if secret else ""
            if stored is None or not hmac.compare_digest(stored, given):
                raise Unauthenticated("the webhook secret is missing or wrong")
        detail = {k: v for k, v in call.model_dump().items() if v and k != "datasets"}
        return self.start_run(
            project,
            name,
            trigger=TriggerKind.webhook,
            detail=detail,
            datasets=call.datasets,
            actor=f"webhook:{name}",
        )

    def watching_dataset(self, session: Session, project: str, dataset: str) -> list[str]:
        """The pipelines that start a run when this dataset gets a new version (read in the
        transaction that commits it, so a pipeline applied later does not see it)."""
        return [
            row.name
            for row, triggers in self._triggers(session, self._project_uid(session, project))
            if dataset in triggers.datasets
        ]

    def watching_alert(self, session: Session, project_uid: str, rule: str) -> list[str]:
        """The pipelines whose alert trigger names this rule."""
        return [
            row.name
            for row, triggers in self._triggers(session, project_uid)
            if rule in triggers.alerts
        ]

    @staticmethod
    def _triggers(session: Session, project_uid: str) -> list[tuple[PipelineRow, s.Triggers]]:
        """The project's pipelines with their triggers; one whose stored spec no longer reads
        is skipped with a warning, rather than failing the commit that asks."""
        found = []
        rows = session.scalars(
            select(PipelineRow)
            .where(PipelineRow.project_uid == project_uid)
            .order_by(PipelineRow.name)
        )
        for row in rows:
            try:
                found.append((row, s.PipelineSpec.model_validate(row.spec).triggers))
            except ValidationError as exc:
                log.warning("pipeline %s: its stored spec does not read (%d errors); no "
                            "trigger fires", row.name, exc.error_count())  # fmt: skip
        return found

    def start_dataset_run(
        self, project: str, name: str, dataset: str, version: int, trigger_key: str
    ) -> s.RunRead:
        """The run a new dataset version starts, once per `trigger_key`."""
        return self.start_run(
            project,
            name,
            trigger=TriggerKind.dataset,
            detail={"dataset": f"{dataset}:{version}"},
            datasets={dataset: version},
            actor="trigger:dataset",
            trigger_key=trigger_key,
        )

    def start_alert_run(
        self,
        project: str,
        name: str,
        rule: str,
        labels: dict[str, str],
        value: float | None,
        trigger_key: str,
    ) -> s.RunRead | None:
        """The run a firing alert starts, once per `trigger_key`; none (None) while the
        pipeline has an unfinished run started by the same rule."""
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            if self._triggered(session, row, trigger_key) is None:
                busy = session.scalars(
                    select(PipelineRunRow.trigger_detail).where(
                        PipelineRunRow.pipeline_uid == row.uid,
                        PipelineRunRow.trigger == TriggerKind.alert.value,
                        PipelineRunRow.state.in_([RunState.queued.value, RunState.running.value]),
                    )
                ).all()
                if any((detail or {}).get("alert") == rule for detail in busy):
                    log.info("%s/%s already runs for alert %s", project, name, rule)
                    return None
        detail: dict[str, Any] = {"alert": rule, "labels": labels}
        if value is not None:
            detail["value"] = value
        return self.start_run(
            project,
            name,
            trigger=TriggerKind.alert,
            detail=detail,
            actor=f"trigger:alert/{rule}",
            trigger_key=trigger_key,
        )

    def due_schedules(self) -> list[tuple[str, str]]:
        """(project, pipeline) of schedules that are due; moves each to its next time."""
        now = utcnow()
        due: list[tuple[str, str]] = []
        with self.db.transaction() as session:
            rows = session.scalars(
                select(PipelineRow).where(PipelineRow.next_run_at.is_not(None)).with_for_update()
            ).all()
            for row in rows:
                assert row.next_run_at is not None
                if as_utc(row.next_run_at) > now:
                    continue
                schedule = s.PipelineSpec.model_validate(row.spec).triggers.schedule
                row.next_run_at = next_time(schedule, now) if schedule else None
                due.append((self._project_name(session, row.project_uid), row.name))
        return due

    # --- runs --------------------------------------------------------------------------------

    def list_runs(
        self, project: str, name: str, limit: int | None, page_token: str | None
    ) -> tuple[list[s.RunRead], str | None]:
        with self.db.transaction() as session:
            row = self._pipeline(session, project, name)
            stmt = select(PipelineRunRow).where(PipelineRunRow.pipeline_uid == row.uid)
            runs, token = paginate(
                session, stmt, PipelineRunRow.number, limit, page_token, descending=True
            )
            return [self._run_read(session, r, name, project) for r in runs], token

    def get_run(self, project: str, name: str, number: int) -> s.RunRead:
        with self.db.transaction() as session:
            run = self._run(session, project, name, number)
            return self._run_read(session, run, name, project)

    def cancel_run(self, project: str, name: str, number: int, actor: str) -> s.RunRead:
        with self.db.transaction() as session:
            run = self._run(session, project, name, number, for_update=True)
            if RunState(run.state).finished:
                raise Conflict(f"run {name}#{number} has already {run.state}")
            run.state, run.finished_at = RunState.cancelled.value, utcnow()
            run.message = f"cancelled by {actor}"
            started_jobs = []
            for step in self._steps(session, run.uid):
                if step.state == StepState.running.value and (step.outputs or {}).get("job"):
                    started_jobs.append(str(step.outputs["job"]))
                if step.state in (StepState.pending.value, StepState.running.value):
                    step.state = StepState.skipped.value
                    step.message = "cancelled"
            read = self._run_read(session, run, name, project)
        for job in started_jobs:  # a job the run started stops with it
            try:
                self.jobs.cancel(project, job)
            except (Conflict, NotFound):
                pass  # it ended meanwhile
        self.on_change()
        return read

    def resume_run(self, project: str, name: str, number: int, actor: str) -> s.RunRead:
        """Run a failed (or cancelled) run again from its first step that did not succeed;
        the steps before keep their outputs."""
        with self.db.transaction() as session:
            run = self._run(session, project, name, number, for_update=True)
            if run.state not in (RunState.failed.value, RunState.cancelled.value):
                raise Conflict(f"run {name}#{number} is {run.state}: only a failed run resumes")
            for step in self._steps(session, run.uid):
                if step.state != StepState.succeeded.value:
                    step.state, step.message = StepState.pending.value, ""
                    step.finished_at = None
            run.state, run.finished_at = RunState.queued.value, None
            run.message = f"resumed by {actor}"
            detail = dict(run.trigger_detail or {})
            detail["resumed"] = int(detail.get("resumed", 0)) + 1
            run.trigger_detail = detail
            read = self._run_read(session, run, name, project)
        self.on_change()
        return read

    # --- what the controller uses ------------------------------------------------------------

    def active_runs(self) -> list[ActiveRun]:
        with self.db.transaction() as session:
            found = session.execute(
                select(PipelineRunRow, PipelineRow)
                .join(PipelineRow, PipelineRow.uid == PipelineRunRow.pipeline_uid)
                .where(PipelineRunRow.state.in_([RunState.queued.value, RunState.running.value]))
                .order_by(PipelineRunRow.created_at)
            ).all()
            active = []
            for run, pipeline in found:
                project = self._project_name(session, pipeline.project_uid)
                principal = Principal(
                    kind="serviceaccount"
                    if pipeline.principal_kind == "serviceaccount"
                    else "user",
                    uid=pipeline.principal_uid,
                    name=pipeline.applied_by.partition(":")[2],
                    key_project=project,
                )
                active.append(
                    ActiveRun(
                        uid=run.uid,
                        project=project,
                        pipeline=pipeline.name,
                        number=run.number,
                        state=RunState(run.state),
                        spec=s.PipelineSpec.model_validate(run.spec),
                        datasets=dict(run.datasets or {}),
                        principal=principal,
                        trigger=run.trigger,
                        steps=[
                            StepView(
                                uid=step.uid,
                                position=step.position,
                                name=step.name,
                                type=step.type,
                                state=StepState(step.state),
                                attempts=step.attempts,
                                outputs=dict(step.outputs or {}),
                                started_at=as_utc(step.started_at) if step.started_at else None,
                            )
                            for step in self._steps(session, run.uid)
                        ],
                    )
                )
            return active

    def mark_run(self, uid: str, state: RunState, message: str) -> None:
        with self.db.transaction() as session:
            run = session.get(PipelineRunRow, uid, with_for_update=True)
            if run is None or RunState(run.state).finished:
                return
            run.state, run.message = state.value, message
            if state == RunState.running and run.started_at is None:
                run.started_at = utcnow()
            if state.finished:
                run.finished_at = utcnow()

    def update_step(
        self,
        uid: str,
        *,
        state: StepState | None = None,
        message: str | None = None,
        outputs: dict[str, Any] | None = None,
        log: str | None = None,
        new_attempt: bool = False,
    ) -> bool:
        """Change a step; False when its run was cancelled meanwhile (the caller stops)."""
        with self.db.transaction() as session:
            step = session.get(PipelineStepRow, uid, with_for_update=True)
            if step is None:
                return False
            run = session.get(PipelineRunRow, step.run_uid)
            if run is None or run.state == RunState.cancelled.value:
                return False
            now = utcnow()
            if new_attempt:
                step.attempts += 1
                step.started_at, step.finished_at = now, None
            if state is not None:
                step.state = state.value
                if state in (StepState.succeeded, StepState.failed, StepState.skipped):
                    step.finished_at = now
            if message is not None:
                step.message = message
            if outputs is not None:
                step.outputs = {**(step.outputs or {}), **outputs}
            if log:
                stamp = now.strftime("%H:%M:%S")
                lines = "".join(f"{stamp} {line}\n" for line in log.splitlines())
                step.log = ((step.log or "") + lines)[-LOG_LIMIT:]
            return True

    # --- helpers -----------------------------------------------------------------------------

    def _pipeline(self, session: Session, project: str, name: str) -> PipelineRow:
        return self._pipelines.find(session, self._project_uid(session, project), project, name)

    def _run(
        self, session: Session, project: str, name: str, number: int, for_update: bool = False
    ) -> PipelineRunRow:
        row = self._pipeline(session, project, name)
        if number > 2**31:
            raise NotFound(f"pipeline {name!r} has no run {number}")
        stmt = select(PipelineRunRow).where(
            PipelineRunRow.pipeline_uid == row.uid, PipelineRunRow.number == number
        )
        if for_update:
            stmt = stmt.with_for_update()
        run = session.scalar(stmt)
        if run is None:
            raise NotFound(f"pipeline {name!r} has no run {number}")
        return run

    @staticmethod
    def _steps(session: Session, run_uid: str) -> list[PipelineStepRow]:
        return list(
            session.scalars(
                select(PipelineStepRow)
                .where(PipelineStepRow.run_uid == run_uid)
                .order_by(PipelineStepRow.position)
            )
        )

    def _read(self, session: Session, row: PipelineRow, project: str) -> s.PipelineRead:
        count, last = session.execute(
            select(func.count(), func.max(PipelineRunRow.number)).where(
                PipelineRunRow.pipeline_uid == row.uid
            )
        ).one()
        last_state = None
        if last is not None:
            state = session.scalar(
                select(PipelineRunRow.state).where(
                    PipelineRunRow.pipeline_uid == row.uid, PipelineRunRow.number == last
                )
            )
            last_state = RunState(state) if state else None
        spec = s.PipelineSpec.model_validate(row.spec)
        return s.PipelineRead(
            metadata=metadata_of(row, project=project),
            spec=spec,
            status=s.PipelineStatus(
                runs=int(count),
                last_run=last,
                last_state=last_state,
                next_scheduled_at=as_utc(row.next_run_at) if row.next_run_at else None,
                webhook_url=webhook_path(project, row.name) if spec.triggers.webhook else None,
            ),
        )

    def _run_read(
        self, session: Session, run: PipelineRunRow, pipeline: str, project: str
    ) -> s.RunRead:
        steps = []
        for step in self._steps(session, run.uid):
            seconds = None
            if step.started_at is not None:
                end = as_utc(step.finished_at) if step.finished_at else utcnow()
                seconds = round((end - as_utc(step.started_at)).total_seconds(), 3)
            steps.append(
                s.StepRead(
                    name=step.name,
                    type=step.type,
                    state=StepState(step.state),
                    attempts=step.attempts,
                    started_at=as_utc(step.started_at) if step.started_at else None,
                    finished_at=as_utc(step.finished_at) if step.finished_at else None,
                    seconds=seconds,
                    message=step.message or "",
                    outputs=step.outputs or {},
                    log=step.log or "",
                )
            )
        return s.RunRead(
            pipeline=pipeline,
            project=project,
            number=run.number,
            state=RunState(run.state),
            trigger=TriggerKind(run.trigger),
            trigger_detail=run.trigger_detail or {},
            datasets=run.datasets or {},
            created_at=as_utc(run.created_at),
            created_by=run.created_by,
            started_at=as_utc(run.started_at) if run.started_at else None,
            finished_at=as_utc(run.finished_at) if run.finished_at else None,
            message=run.message or "",
            steps=steps,
        )
