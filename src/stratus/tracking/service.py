"""Experiments and their runs: params, metric series, tags and artifacts.

Training code logs through the SDK (`stratus.tracking`), which sends batches: each batch is one
transaction on the run's row (locked), so params stay write-once under concurrent writers and
the latest-value summary of each metric moves with its points. A run ends once (finished,
failed or killed); after that its params, metrics and artifacts are a record that no longer
changes, while tags stay editable. Artifacts are content-addressed blobs, released when their
run or experiment is deleted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import delete, func, insert, or_, select
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
    paginate,
)
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BlobInfo
from stratus.storage.uploads import FileUpload
from stratus.tracking import schemas as s
from stratus.tracking.tables import (
    ArtifactRow,
    ExperimentRow,
    LatestMetricRow,
    MetricRow,
    RunRow,
)

ProjectLookup = Callable[[Session, str], str]  # (the caller's session, project name) -> uid
RUN_STATES = ("running", "finished", "failed", "killed")


def same_param(old: Any, new: Any) -> bool:
    """Whether a param logged again has the value it has (True is not 1; 1 is 1.0)."""
    return isinstance(old, bool) == isinstance(new, bool) and old == new


def _stored(value: float) -> float | None:
    """A metric value as a column holds it: NaN is NULL (SQLite turns NaN into NULL anyway,
    so both databases agree); ±infinity is kept."""
    return None if math.isnan(value) else value


class TrackingService:
    def __init__(
        self, db: Database, blobs: Blobs, bus: EventBus, project_uid: ProjectLookup
    ) -> None:
        self.db = db
        self.blobs = blobs
        self._project_uid = project_uid
        self._experiments = ProjectScoped(ExperimentRow, "experiment")
        guard_project_deletion(bus, ExperimentRow.project_uid, ExperimentRow.name, "experiments")

    # --- experiments -------------------------------------------------------------------------

    def create_experiment(self, project: str, data: s.ExperimentCreate) -> s.ExperimentRead:
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._experiments.refuse_duplicate(session, project_uid, project, data.name)
            row = ExperimentRow(
                name=data.name,
                project_uid=project_uid,
                description=data.description,
                labels=data.labels,
            )
            session.add(row)
            session.flush()
            return self._experiment_read(session, row, project)

    def list_experiments(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.ExperimentRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._experiments, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._experiment_read(session, r, p) for r, p in pairs], token

    def get_experiment(self, project: str, name: str) -> s.ExperimentRead:
        with self.db.transaction() as session:
            row = self._experiment(session, project, name)
            return self._experiment_read(session, row, project)

    def update_experiment(
        self, project: str, name: str, data: s.ExperimentUpdate
    ) -> s.ExperimentRead:
        with self.db.transaction() as session:
            row = self._experiment(session, project, name)
            self._experiments.update(row, data)
            session.flush()
            return self._experiment_read(session, row, project)

    def delete_experiment(self, project: str, name: str, force: bool = False) -> None:
        with self.db.transaction() as session:
            row = self._experiment(session, project, name)
            runs = session.scalar(
                select(func.count()).select_from(RunRow).where(RunRow.experiment_uid == row.uid)
            )
            if runs and not force:
                raise Conflict(f"experiment {name!r} has {runs} runs: delete it with force")
            artifacts = session.scalars(
                select(ArtifactRow.sha256)
                .join(RunRow, RunRow.uid == ArtifactRow.run_uid)
                .where(RunRow.experiment_uid == row.uid, ArtifactRow.stored.is_(True))
            ).all()
            self._release(session, row.project_uid, artifacts)
            session.delete(row)  # runs, metrics and artifact rows cascade

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self, project: str, experiment: str, data: s.RunCreate, *, actor: str
    ) -> s.RunRead:
        with self.db.transaction() as session:
            exp = self._experiment(session, project, experiment)
            run = RunRow(
                uid=new_id("run_"),
                project_uid=exp.project_uid,
                experiment_uid=exp.uid,
                name=data.name,
                state="running",
                params=dict(data.params),
                tags=dict(data.tags),
                created_by=actor,
                started_at=utcnow(),
            )
            session.add(run)
            session.flush()
            return self._run_read(session, run, exp.name, project)

    def list_runs(
        self,
        project: str,
        experiment: str,
        state: str | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.RunRead], str | None]:
        """An experiment's runs, newest first."""
        if state is not None and state not in RUN_STATES:
            raise InvalidInput(f"state {state!r} is not one of {', '.join(RUN_STATES)}")
        with self.db.transaction() as session:
            exp = self._experiment(session, project, experiment)
            stmt = select(RunRow).where(RunRow.experiment_uid == exp.uid)
            if state is not None:
                stmt = stmt.where(RunRow.state == state)
            runs, token = paginate(session, stmt, RunRow.uid, limit, page_token, descending=True)
            return self._run_reads(session, runs, {exp.uid: exp.name}, project), token

    def get_run(self, project: str, run_id: str) -> s.RunRead:
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            return self._run_read(session, run, self._experiment_name(session, run), project)

    def update_run(self, project: str, run_id: str, data: s.RunUpdate) -> s.RunRead:
        """End the run, rename it, or change its tags (a null value removes a tag)."""
        with self.db.transaction() as session:
            run = self._run(session, project, run_id, for_update=True)
            if data.state is not None and data.state != run.state:
                if run.state != "running":
                    raise Conflict(f"run {run_id} has ended ({run.state}): it cannot end again")
                run.state, run.ended_at = data.state, utcnow()
            if data.name is not None:
                run.name = data.name
            if data.tags:
                tags = dict(run.tags or {})
                for key, value in data.tags.items():
                    if value is None:
                        tags.pop(key, None)
                    else:
                        tags[key] = value
                run.tags = tags
            session.flush()
            return self._run_read(session, run, self._experiment_name(session, run), project)

    def delete_run(self, project: str, run_id: str) -> None:
        with self.db.transaction() as session:
            run = self._run(session, project, run_id, for_update=True)
            artifacts = session.scalars(
                select(ArtifactRow.sha256).where(
                    ArtifactRow.run_uid == run.uid, ArtifactRow.stored.is_(True)
                )
            ).all()
            self._release(session, run.project_uid, artifacts)
            session.execute(delete(RunRow).where(RunRow.uid == run.uid))

    # --- logging -----------------------------------------------------------------------------

    def log(self, project: str, run_id: str, data: s.RunLog) -> s.RunRead:
        """Write a batch in one transaction. A param logged again with another value is a 409
        (and nothing of the batch is written); the same value again is accepted."""
        with self.db.transaction() as session:
            run = self._run(session, project, run_id, for_update=True)
            if (data.params or data.metrics) and run.state != "running":
                raise Conflict(
                    f"run {run_id} has ended ({run.state}): its params and metrics are final"
                )
            if data.params:
                params = dict(run.params or {})
                clashes = [
                    k
                    for k, v in data.params.items()
                    if k in params and not same_param(params[k], v)
                ]
                if clashes:
                    key = clashes[0]
                    raise Conflict(
                        f"param {key!r} of run {run_id} is {params[key]!r}; params are "
                        f"write-once, so it cannot become {data.params[key]!r}",
                        keys=clashes,
                    )
                params.update(data.params)
                run.params = params
            if data.tags:
                run.tags = {**(run.tags or {}), **data.tags}
            if data.metrics:
                self._add_metrics(session, run.uid, data.metrics)
            session.flush()
            return self._run_read(session, run, self._experiment_name(session, run), project)

    @staticmethod
    def _add_metrics(session: Session, run_uid: str, points: list[s.MetricPoint]) -> None:
        now = utcnow()
        rows: list[dict[str, Any]] = [
            {
                "run_uid": run_uid,
                "key": p.key,
                "step": p.step,
                "value": _stored(p.value),
                "timestamp": p.timestamp or now,
            }
            for p in points
        ]
        session.execute(insert(MetricRow), rows)
        by_key: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_key.setdefault(row["key"], []).append(row)
        summaries = {
            r.key: r
            for r in session.scalars(
                select(LatestMetricRow)
                .where(LatestMetricRow.run_uid == run_uid, LatestMetricRow.key.in_(by_key))
                .with_for_update()
            )
        }
        for key, new in by_key.items():
            latest = max(new, key=lambda r: (r["step"], r["timestamp"]))
            finite = [
                r["value"] for r in new if r["value"] is not None and math.isfinite(r["value"])
            ]
            summary = summaries.get(key)
            if summary is None:
                summary = LatestMetricRow(run_uid=run_uid, key=key, count=0)
                summary.step, summary.timestamp = -1, latest["timestamp"]
                session.add(summary)
            if (latest["step"], latest["timestamp"]) >= (summary.step, as_utc(summary.timestamp)):
                summary.step, summary.value = latest["step"], latest["value"]
                summary.timestamp = latest["timestamp"]
            summary.count = (summary.count or 0) + len(new)
            if finite:
                low, high = min(finite), max(finite)
                summary.min = low if summary.min is None else min(summary.min, low)
                summary.max = high if summary.max is None else max(summary.max, high)

    def metrics(self, project: str, run_id: str) -> list[s.MetricSummary]:
        """Each metric of a run: its latest value, step, point count, and finite min/max."""
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            rows = session.scalars(
                select(LatestMetricRow)
                .where(LatestMetricRow.run_uid == run.uid)
                .order_by(LatestMetricRow.key)
            ).all()
            return [
                s.MetricSummary(
                    key=r.key,
                    value=s.to_api(r.value),
                    step=r.step,
                    timestamp=as_utc(r.timestamp),
                    count=r.count,
                    min=r.min,
                    max=r.max,
                )
                for r in rows
            ]

    def metric_history(
        self,
        project: str,
        run_id: str,
        key: str,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.MetricPointRead], str | None]:
        """A metric's points in step order (points of one step in the order logged)."""
        size = check_limit(limit)
        after = decode_token(page_token)
        if after is not None and not (
            isinstance(after, list)
            and len(after) == 2
            and all(
                isinstance(x, int) and not isinstance(x, bool) and -(2**63) <= x <= s.MAX_STEP
                for x in after
            )
        ):
            raise InvalidInput(f"page_token {page_token!r} is not valid")
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            known = session.scalar(
                select(LatestMetricRow.key).where(
                    LatestMetricRow.run_uid == run.uid, LatestMetricRow.key == key
                )
            )
            if known is None:
                raise NotFound(f"run {run_id} has no metric {key!r}")
            stmt = select(MetricRow).where(MetricRow.run_uid == run.uid, MetricRow.key == key)
            if after is not None:
                step, last_id = after
                stmt = stmt.where(
                    or_(MetricRow.step > step, (MetricRow.step == step) & (MetricRow.id > last_id))
                )
            rows = list(
                session.scalars(stmt.order_by(MetricRow.step, MetricRow.id).limit(size + 1))
            )
        token = None
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token([rows[-1].step, rows[-1].id])
        points = [
            s.MetricPointRead(
                key=r.key, value=s.to_api(r.value), step=r.step, timestamp=as_utc(r.timestamp)
            )
            for r in rows
        ]
        return points, token

    # --- artifacts ---------------------------------------------------------------------------

    def declare_artifacts(
        self, project: str, run_id: str, data: s.ArtifactsDeclare
    ) -> list[s.ArtifactRead]:
        """Add files to a running run. Files whose bytes the project already stores are
        stored at once (nothing to upload); a path logged before is replaced."""
        paths = [f.path for f in data.files]
        if len(set(paths)) != len(paths):
            raise InvalidInput("the same artifact path is listed twice")
        with self.db.transaction() as session:
            run = self._run(session, project, run_id, for_update=True)
            self._refuse_ended(run, "artifacts")
            existing = {
                a.path: a
                for a in session.scalars(
                    select(ArtifactRow).where(
                        ArtifactRow.run_uid == run.uid, ArtifactRow.path.in_(paths)
                    )
                )
            }
            known = self.blobs.known(session, run.project_uid, (f.sha256 for f in data.files))
            out: list[ArtifactRow] = []
            for f in data.files:
                row = existing.get(f.path)
                if row is None:
                    row = ArtifactRow(run_uid=run.uid, path=f.path, stored=False)
                    session.add(row)
                elif (row.sha256, row.size) != (f.sha256, f.size) and row.stored:
                    self.blobs.release(session, run.project_uid, row.sha256)
                    row.stored = False
                if (row.sha256, row.size) != (f.sha256, f.size):
                    row.sha256, row.size, row.created_at = f.sha256, f.size, utcnow()
                if not row.stored and f.sha256 in known:
                    info = BlobInfo(sha256=f.sha256, size=f.size)
                    self.blobs.acquire(session, run.project_uid, info)
                    row.stored = True
                out.append(row)
            session.flush()
            return [self._artifact_read(row) for row in out]

    def begin_artifact_upload(self, project: str, run_id: str, path: str) -> FileUpload:
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            self._refuse_ended(run, "artifacts")
            row = session.get(ArtifactRow, (run.uid, path))
            if row is None:
                raise NotFound(f"run {run_id} declares no artifact {path!r}: declare it first")
            entry = {"path": row.path, "sha256": row.sha256}
            project_uid = run.project_uid
        return FileUpload.start(self.blobs, project_uid, run.uid, entry)

    def finish_artifact_upload(self, upload: FileUpload) -> s.ArtifactRead:
        """Record the uploaded bytes (checked against the declared SHA-256 and size)."""
        info = upload.writer.commit(expected_sha256=upload.sha256)
        with self.db.transaction() as session:
            row = session.get(ArtifactRow, (upload.version_uid, upload.path), with_for_update=True)
            if row is None or row.sha256 != upload.sha256:
                raise Conflict(
                    f"artifact {upload.path!r} was replaced or deleted during the upload"
                )
            if row.size != info.size:
                raise InvalidInput(
                    f"{upload.path!r} has {info.size} bytes, not {row.size} as declared"
                )
            if not row.stored:
                self.blobs.acquire(session, upload.project_uid, info)
                row.stored = True
            session.flush()
            return self._artifact_read(row)

    def list_artifacts(
        self, project: str, run_id: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.ArtifactRead], str | None]:
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            stmt = select(ArtifactRow).where(ArtifactRow.run_uid == run.uid)
            rows, token = paginate(session, stmt, ArtifactRow.path, limit, page_token)
            return [self._artifact_read(r) for r in rows], token

    def open_artifact(
        self, project: str, run_id: str, path: str
    ) -> tuple[s.ArtifactRead, Iterator[bytes]]:
        with self.db.transaction() as session:
            run = self._run(session, project, run_id)
            row = session.get(ArtifactRow, (run.uid, path))
            if row is None or not row.stored:
                raise NotFound(f"run {run_id} has no artifact {path!r}")
            read, project_uid = self._artifact_read(row), run.project_uid
        return read, self.blobs.open(project_uid, read.sha256)

    # --- comparing ---------------------------------------------------------------------------

    def compare(
        self,
        project: str,
        run_ids: list[str] | None = None,
        experiment: str | None = None,
        limit: int = 20,
    ) -> s.RunComparison:
        """Runs side by side: every param and latest metric, one value per run. Either the
        runs named (in that order), or an experiment's `limit` newest runs."""
        if bool(run_ids) == (experiment is not None):
            raise InvalidInput("compare either runs (run_id) or an experiment, not both")
        if run_ids:
            if len(run_ids) > s.MAX_COMPARED_RUNS:
                raise InvalidInput(f"compare at most {s.MAX_COMPARED_RUNS} runs at a time")
            if len(set(run_ids)) != len(run_ids):
                raise InvalidInput("the same run is named twice")
        if not 1 <= limit <= s.MAX_COMPARED_RUNS:
            raise InvalidInput(f"limit must be between 1 and {s.MAX_COMPARED_RUNS}")
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            if experiment is not None:
                exp = self._experiments.find(session, project_uid, project, experiment)
                runs = list(
                    session.scalars(
                        select(RunRow)
                        .where(RunRow.experiment_uid == exp.uid)
                        .order_by(RunRow.uid.desc())
                        .limit(limit)
                    )
                )
            else:
                assert run_ids
                found = {
                    r.uid: r
                    for r in session.scalars(
                        select(RunRow).where(
                            RunRow.project_uid == project_uid, RunRow.uid.in_(run_ids)
                        )
                    )
                }
                missing = [r for r in run_ids if r not in found]
                if missing:
                    raise NotFound(f"run {missing[0]} not found in project {project!r}")
                runs = [found[r] for r in run_ids]
            names = dict(
                session.execute(
                    select(ExperimentRow.uid, ExperimentRow.name).where(
                        ExperimentRow.uid.in_({r.experiment_uid for r in runs})
                    )
                ).all()
            )
            reads = self._run_reads(session, runs, names, project)
        return s.RunComparison(
            runs=reads,
            params=_side_by_side([r.params for r in reads]),
            metrics=_side_by_side([dict(r.metrics) for r in reads]),
        )

    # --- helpers -----------------------------------------------------------------------------

    def _experiment(self, session: Session, project: str, name: str) -> ExperimentRow:
        return self._experiments.find(session, self._project_uid(session, project), project, name)

    def _run(self, session: Session, project: str, run_id: str, for_update: bool = False) -> RunRow:
        stmt = select(RunRow).where(
            RunRow.uid == run_id, RunRow.project_uid == self._project_uid(session, project)
        )
        if for_update:
            stmt = stmt.with_for_update()
        run = session.scalar(stmt)
        if run is None:
            raise NotFound(f"run {run_id!r} not found in project {project!r}")
        return run

    @staticmethod
    def _refuse_ended(run: RunRow, what: str) -> None:
        if run.state != "running":
            raise Conflict(f"run {run.uid} has ended ({run.state}): its {what} are final")

    @staticmethod
    def _experiment_name(session: Session, run: RunRow) -> str:
        return str(
            session.scalar(
                select(ExperimentRow.name).where(ExperimentRow.uid == run.experiment_uid)
            )
        )

    def _release(self, session: Session, project_uid: str, digests: Iterable[str]) -> None:
        for sha in digests:
            self.blobs.release(session, project_uid, sha)

    @staticmethod
    def _experiment_read(session: Session, row: ExperimentRow, project: str) -> s.ExperimentRead:
        runs, running, last = session.execute(
            select(
                func.count(),
                func.count().filter(RunRow.state == "running"),
                func.max(RunRow.started_at),
            ).where(RunRow.experiment_uid == row.uid)
        ).one()
        return s.ExperimentRead(
            metadata=metadata_of(row, project=project),
            spec=s.ExperimentSpec(description=row.description),
            status=s.ExperimentStatus(
                runs=int(runs), running=int(running), last_run_at=as_utc(last) if last else None
            ),
        )

    def _run_read(self, session: Session, run: RunRow, experiment: str, project: str) -> s.RunRead:
        return self._run_reads(session, [run], {run.experiment_uid: experiment}, project)[0]

    @staticmethod
    def _run_reads(
        session: Session, runs: list[RunRow], experiments: dict[str, str], project: str
    ) -> list[s.RunRead]:
        latest: dict[str, dict[str, s.MetricValue]] = {r.uid: {} for r in runs}
        if runs:
            for m in session.scalars(
                select(LatestMetricRow)
                .where(LatestMetricRow.run_uid.in_(list(latest)))
                .order_by(LatestMetricRow.key)
            ):
                latest[m.run_uid][m.key] = s.to_api(m.value)
        return [
            s.RunRead(
                id=r.uid,
                experiment=experiments[r.experiment_uid],
                project=project,
                name=r.name,
                state=r.state,
                created_by=r.created_by,
                started_at=as_utc(r.started_at),
                ended_at=as_utc(r.ended_at) if r.ended_at else None,
                params=dict(sorted((r.params or {}).items())),
                tags=dict(sorted((r.tags or {}).items())),
                metrics=latest[r.uid],
            )
            for r in runs
        ]

    @staticmethod
    def _artifact_read(row: ArtifactRow) -> s.ArtifactRead:
        return s.ArtifactRead(
            path=row.path,
            sha256=row.sha256,
            size=row.size,
            stored=row.stored,
            created_at=as_utc(row.created_at) if row.created_at else utcnow(),
        )


def _side_by_side(per_run: list[dict[str, Any]]) -> list[s.ComparedKey]:
    rows = []
    for key in sorted({k for values in per_run for k in values}):
        present = [key in values for values in per_run]
        column = [values.get(key) for values in per_run]
        differs = not all(present) or any(not same_param(column[0], v) for v in column[1:])
        rows.append(s.ComparedKey(key=key, values=column, differs=differs))
    return rows
