"""Monitors: drift of an endpoint's inputs and predictions from a reference, and performance
of its predictions against ground truth, each over a window of captured requests, run on a
schedule, with every result kept.

Drift compares the captured rows with a reference dataset version: the one named in the spec,
else the one the served model version was trained on (its registry lineage). The reference is
read and prepared once (`statistics.Reference`, pre-sorted columns) and cached. Predictions are
compared with the reference's label column (the model should predict classes about as often
as they occur in its training data), as the feature `prediction`.

Performance joins captured predictions with ground truth posted later by request id and row,
per model version.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, InvalidInput, NotFound, StratusError
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import (
    ProjectScoped,
    check_limit,
    decode_token,
    encode_token,
    metadata_of,
)
from stratus.data.service import DataService
from stratus.endpoints.service import EndpointService
from stratus.monitoring import performance
from stratus.monitoring import schemas as s
from stratus.monitoring.capture import (
    PREDICTION_COLUMNS,
    CapturedRequest,
    CaptureStore,
    Window,
    iter_columns,
)
from stratus.monitoring.statistics import DriftReport, DriftSettings, Reference, compute_drift
from stratus.monitoring.tables import (
    GroundTruthRow,
    MonitorResultRow,
    MonitorRow,
    MonitorStateRow,
)
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService
from stratus.registry.signatures import class_name
from stratus.serving.capture import PROBABILITY

log = logging.getLogger("stratus.monitors")

ProjectLookup = Callable[[Session, str], str]
_SKIPPED_TAGS = {"label", "id", "timestamp", "pii"}
_CATEGORICAL_LABEL_LIMIT = 50
_REFERENCE_CACHE = 8
_MAX_REFERENCE_ROWS = 200_000


@dataclass
class Latest:
    """A monitor's newest result, for the metrics endpoint."""

    project: str
    endpoint: str
    monitor: str
    type: str
    alarm: bool
    score: float | None
    features: dict[str, float] = field(default_factory=dict)  # drift: per-feature score
    performance: dict[str, dict[str, float]] = field(default_factory=dict)  # version → metrics
    version_alarms: dict[str, bool] = field(default_factory=dict)  # version → out of bounds


class MonitorService:
    def __init__(
        self,
        db: Database,
        captures: CaptureStore,
        data: DataService,
        registry: RegistryService,
        endpoints: EndpointService,
        project_uid: ProjectLookup,
        project_name: ProjectLookup,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.captures = captures
        self.data = data
        self.registry = registry
        self.endpoints = endpoints
        self._project_uid = project_uid
        self._project_name = project_name
        self.on_change = on_change or (lambda: None)
        self._monitors = ProjectScoped(MonitorRow, "monitor")
        self._references: OrderedDict[tuple[Any, ...], tuple[Reference, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.latest: dict[str, Latest] = {}  # monitor uid → its newest result

    # --- monitors ------------------------------------------------------------------------------

    def apply(self, project: str, data: s.MonitorApply) -> tuple[s.MonitorRead, bool]:
        self.endpoints.get(project, data.endpoint)  # NotFound names the endpoint
        self._check_prediction_source(project, data.endpoint, data.prediction_source)
        spec = s.MonitorSpec.model_validate(
            data.model_dump(exclude={"name", "labels"}, exclude_unset=False)
        )
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            row = session.scalar(
                select(MonitorRow).where(
                    MonitorRow.project_uid == project_uid, MonitorRow.name == data.name
                )
            )
            created = row is None
            if row is None:
                row = MonitorRow(name=data.name, project_uid=project_uid, labels=data.labels)
                session.add(row)
            row.endpoint = data.endpoint
            row.labels = data.labels
            row.spec = spec.model_dump(mode="json")
            session.flush()
            state = session.get(MonitorStateRow, row.uid)
            if state is None:
                state = MonitorStateRow(monitor_uid=row.uid)
                session.add(state)
            fresh = s.MonitorStatus(message="waiting for its first run")
            state.next_run_at = fresh.next_run_at = utcnow() if spec.enabled else None
            state.status = fresh.model_dump(mode="json")
            session.flush()
            read = self._read(session, row, project)
        self.on_change()
        return read, created

    def list_monitors(
        self,
        project: str | None,
        endpoint: str | None = None,
        selector: str | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.MonitorRead], str | None]:
        with self.db.transaction() as session:
            if endpoint is None or project is None:  # None: every project's (an admin's)
                where = () if endpoint is None else (MonitorRow.endpoint == endpoint,)
                pairs, token = page_in_projects(
                    self._monitors,
                    session,
                    project,
                    self._project_uid,
                    selector,
                    limit,
                    page_token,
                    where=where,
                )
                return [self._read(session, row, p) for row, p in pairs], token
            # an endpoint of one project has a few monitors: all of them, no pages
            project_uid = self._project_uid(session, project)
            rows = session.scalars(
                select(MonitorRow)
                .where(MonitorRow.project_uid == project_uid, MonitorRow.endpoint == endpoint)
                .order_by(MonitorRow.name)
            )
            return [self._read(session, row, project) for row in rows], None

    def get(self, project: str, name: str) -> s.MonitorRead:
        with self.db.transaction() as session:
            return self._read(session, self._monitor(session, project, name), project)

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            row = self._monitor(session, project, name)
            self.latest.pop(row.uid, None)
            session.delete(row)

    def results(
        self, project: str, name: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.MonitorResultRead], str | None]:
        """A monitor's history, newest first."""
        limit = check_limit(limit)
        with self.db.transaction() as session:
            row = self._monitor(session, project, name)
            query = select(MonitorResultRow).where(MonitorResultRow.monitor_uid == row.uid)
            if page_token:
                query = query.where(MonitorResultRow.id < int(decode_token(page_token)))
            found = session.scalars(
                query.order_by(MonitorResultRow.id.desc()).limit(limit + 1)
            ).all()
            more = len(found) > limit
            found = found[:limit]
            token = encode_token(str(found[-1].id)) if more and found else None
            return [_result_read(r, row) for r in found], token

    def result(self, project: str, name: str, result_id: int) -> s.MonitorResultRead:
        with self.db.transaction() as session:
            row = self._monitor(session, project, name)
            found = session.get(MonitorResultRow, result_id)
            if found is None or found.monitor_uid != row.uid:
                raise NotFound(f"monitor {name!r} has no result {result_id}")
            return _result_read(found, row)

    # --- running -------------------------------------------------------------------------------

    def due(self, now: datetime) -> list[str]:
        with self.db.transaction() as session:
            return list(
                session.scalars(
                    select(MonitorStateRow.monitor_uid)
                    .where(
                        MonitorStateRow.next_run_at.is_not(None),
                        MonitorStateRow.next_run_at <= now,
                    )
                    .order_by(MonitorStateRow.next_run_at)
                    .limit(100)
                )
            )

    def run(self, project: str, name: str, window: s.Window | None = None) -> s.MonitorResultRead:
        """Run a monitor now; its result joins the history."""
        with self.db.transaction() as session:
            uid = self._monitor(session, project, name).uid
        result = self.evaluate(uid, window=window, scheduled=False)
        if result is None:
            status = self.get(project, name).status
            raise Conflict(f"monitor {name!r} has no result: {status.message}")
        return result

    def drift_now(self, project: str, endpoint: str, data: s.DriftRequest) -> s.MonitorResultRead:
        """A drift report over the endpoint's recent captures, kept nowhere."""
        self.endpoints.get(project, endpoint)
        self._check_prediction_source(project, endpoint, data.prediction_source)
        spec = s.MonitorSpec(
            endpoint=endpoint,
            type="drift",
            reference=data.reference,
            features=data.features,
            prediction=data.prediction,
            prediction_source=data.prediction_source,
            window=data.window,
            interval_seconds=300,
            min_rows=data.min_rows,
            drift=data.drift,
        )
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
        now = utcnow()
        outcome = self._measure(project, project_uid, spec, data.window, now)
        if isinstance(outcome, str):
            raise Conflict(outcome)
        return s.MonitorResultRead(
            id=0,
            monitor="",
            endpoint=endpoint,
            type="drift",
            time=now,
            window_start=outcome.start,
            window_end=outcome.end,
            rows=outcome.rows,
            alarm=outcome.alarm,
            score=outcome.score,
            reference=outcome.reference,
            report=outcome.report,
        )

    def evaluate(
        self, uid: str, window: s.Window | None = None, scheduled: bool = True
    ) -> s.MonitorResultRead | None:
        """Run one monitor over its window: keep the result (None when there was too little
        data, or an error, which its status then says)."""
        with self.db.transaction() as session:
            row = session.get(MonitorRow, uid)
            if row is None:
                return None
            project = self._project_name(session, row.project_uid)
            spec = s.MonitorSpec.model_validate(row.spec)
            name, project_uid = row.name, row.project_uid
        now = utcnow()
        window = window or spec.window
        try:
            outcome = self._measure(project, project_uid, spec, window, now)
        except StratusError as exc:
            self._finish(uid, spec, now, scheduled, state="error", message=exc.detail)
            return None
        except Exception as exc:  # a broken reference file, say: the monitor says so and waits
            log.exception("monitor %s/%s failed", project, name)
            self._finish(uid, spec, now, scheduled, state="error", message=f"failed: {exc}")
            return None
        if isinstance(outcome, str):
            self._finish(uid, spec, now, scheduled, state="insufficient-data", message=outcome)
            return None
        return self._finish(uid, spec, now, scheduled, outcome=outcome)

    def _measure(
        self, project: str, project_uid: str, spec: s.MonitorSpec, window: s.Window, now: datetime
    ) -> Outcome | str:
        since = now - timedelta(seconds=window.seconds) if window.seconds else None
        read_window = Window(since=since, until=now, rows=window.rows)
        if spec.type == "drift":
            return self._drift(project, project_uid, spec, read_window)
        return self._performance(project_uid, spec, read_window)

    def _finish(
        self,
        uid: str,
        spec: s.MonitorSpec,
        now: datetime,
        scheduled: bool,
        *,
        outcome: Outcome | None = None,
        state: str = "ok",
        message: str = "",
    ) -> s.MonitorResultRead | None:
        with self.db.transaction() as session:
            row = session.get(MonitorRow, uid)
            state_row = session.get(MonitorStateRow, uid, with_for_update=True)
            if row is None or state_row is None:
                return None
            status = s.MonitorStatus.model_validate(state_row.status or {})
            status.last_run_at = now
            if scheduled or state_row.next_run_at is None:
                state_row.next_run_at = (
                    now + timedelta(seconds=spec.interval_seconds) if spec.enabled else None
                )
            status.next_run_at = state_row.next_run_at
            result: MonitorResultRow | None = None
            if outcome is None:
                status.state, status.message = state, message  # type: ignore[assignment]
            else:
                result = MonitorResultRow(
                    monitor_uid=uid,
                    time=now,
                    window_start=outcome.start,
                    window_end=outcome.end,
                    rows=outcome.rows,
                    alarm=outcome.alarm,
                    score=outcome.score,
                    reference=outcome.reference,
                    report=outcome.report,
                )
                session.add(result)
                status.state = "alarm" if outcome.alarm else "ok"
                status.message = outcome.message
                status.rows, status.score = outcome.rows, outcome.score
                status.reference = outcome.reference
            state_row.status = status.model_dump(mode="json")
            session.flush()
            if result is None:
                return None
            project = self._project_name(session, row.project_uid)
            self.latest[uid] = outcome.latest(project, row.endpoint, row.name, spec.type)  # type: ignore[union-attr]
            return _result_read(result, row)

    # --- drift ---------------------------------------------------------------------------------

    def _drift(
        self, project: str, project_uid: str, spec: s.MonitorSpec, window: Window
    ) -> Outcome | str:
        reference_name = spec.reference or self._training_dataset(project, spec.endpoint)
        current = self.captures.read(project_uid, spec.endpoint, window)
        if current is None or current.num_rows < spec.min_rows:
            rows = 0 if current is None else current.num_rows
            return (
                f"{rows} captured rows in the window, fewer than min_rows ({spec.min_rows}); "
                f"is capture on? (`stratus endpoints capture {spec.endpoint}` shows it, "
                "`--sample 1` turns it on)"
            )
        reference, label, ref_name = self._reference(project, reference_name, spec, current)
        columns = [c for c in reference.names if c != "prediction"]
        predicted = _predicted_column(spec)
        if spec.prediction and predicted != PREDICTION_COLUMNS[0]:
            if predicted not in current.column_names:
                raise InvalidInput(_no_probabilities(spec.endpoint, predicted))
        if "prediction" in reference.names and predicted in current.column_names:
            columns.append("prediction")
        if not columns:
            raise InvalidInput(
                f"the captures of {spec.endpoint!r} and {ref_name} have no column in common"
            )
        settings = DriftSettings(
            numeric_method=spec.drift.numeric_method,
            numeric_threshold=spec.drift.numeric_threshold,
            categorical_method=spec.drift.categorical_method,
            categorical_threshold=spec.drift.categorical_threshold,
            drift_share=spec.drift.drift_share,
        )
        values = {c: current[c] for c in columns if c != "prediction"}
        if "prediction" in columns:
            values["prediction"] = current[predicted]
        report = compute_drift(reference, values, settings, columns=columns)
        times = current["time"]
        drifted = [f.name for f in report.features if f.drifted]
        message = (
            f"{len(drifted)} of {len(report.features)} features drifted "
            f"({report.share:.0%}, threshold {settings.drift_share:.0%})"
            + (f": {', '.join(drifted[:10])}" if drifted else "")
        )
        body = report.as_json()
        body["reference"] = ref_name
        body["label"] = label
        body["model_versions"] = _counts(current["model_version"])
        return Outcome(
            start=as_utc(pc.min(times).as_py()),
            end=as_utc(pc.max(times).as_py()),
            rows=current.num_rows,
            alarm=report.drifted,
            score=report.share,
            reference=ref_name,
            report=body,
            message=message,
            drift=report,
        )

    def _check_prediction_source(self, project: str, endpoint: str, source: str) -> None:
        """Refuse a prediction source that is not `label` or `probability:CLASS`, or names a
        class the served model does not have (when its signature lists its classes)."""
        wanted = _probability_class(source)
        if wanted is None:
            return
        classes = self._served_classes(project, endpoint)
        if classes is not None and wanted not in classes:
            raise InvalidInput(
                f"prediction_source {source!r}: the model endpoint {endpoint!r} serves has no "
                f"class {wanted!r} (its classes: {', '.join(classes)})"
            )

    def _served_classes(self, project: str, endpoint: str) -> list[str] | None:
        """The class names of the endpoint's main model version, when its signature lists them."""
        try:
            read = self.endpoints.get(project, endpoint)
            live = [v for v in read.spec.variants if not v.shadow and v.name != "canary"]
            variant = next((v for v in live if v.name == "main"), live[0] if live else None)
            if variant is None or variant.version is None:
                return None
            model = parse_ref(variant.model).model
            version = self.registry.get_version(project, model, str(variant.version))
        except StratusError:
            return None
        for output in (version.signature or {}).get("outputs") or []:
            if isinstance(output, dict) and isinstance(output.get("classes"), list):
                return [class_name(c) for c in output["classes"]]
        return None

    def _training_dataset(self, project: str, endpoint: str) -> str:
        read = self.endpoints.get(project, endpoint)
        live = [v for v in read.spec.variants if not v.shadow and v.name != "canary"]
        variant = next((v for v in live if v.name == "main"), live[0] if live else None)
        if variant is None or variant.version is None:
            raise Conflict(f"endpoint {endpoint!r} serves no model version")
        model = parse_ref(variant.model).model
        version = self.registry.get_version(project, model, str(variant.version))
        if not version.lineage.dataset_version:
            raise Conflict(
                f"{model}:{variant.version} names no training dataset in its lineage: give the "
                "monitor a reference dataset version (reference: NAME:VERSION)"
            )
        return version.lineage.dataset_version

    def _reference(
        self, project: str, name: str, spec: s.MonitorSpec, current: pa.Table
    ) -> tuple[Reference, str | None, str]:
        dataset, _, ref = name.partition(":")
        version = self.data.get_version(project, dataset, ref or "latest")
        ref_name = f"{dataset}:{version.version}"
        tags = {c.name: set(c.tags) for c in version.columns}
        labels = [c for c, t in tags.items() if "label" in t]
        label = labels[0] if len(labels) == 1 else None
        captured = set(iter_columns(current))
        if spec.features:
            missing = [f for f in spec.features if f not in tags]
            if missing:
                raise InvalidInput(f"{ref_name} has no column {missing[0]!r} (monitor features)")
            features = list(spec.features)
        else:
            features = [c for c in tags if c in captured and not (tags[c] & _SKIPPED_TAGS)]
        predicted = _predicted_column(spec)
        probability = predicted != PREDICTION_COLUMNS[0]
        want_prediction = spec.prediction and (label is not None or probability)
        if want_prediction and probability and predicted not in tags:
            raise InvalidInput(
                f"{ref_name} has no column {predicted!r} to compare the captured probabilities "
                "with: give the monitor a reference dataset version that has one (a window of "
                "captures, or the training data scored with the model's predict_proba)"
            )
        key = (project, ref_name, tuple(features), want_prediction, predicted)
        with self._lock:
            cached = self._references.get(key)
            if cached is not None:
                self._references.move_to_end(key)
                return cached[0], label, ref_name
        _, table = self.data.load_table(project, dataset, str(version.version))
        if table.num_rows > _MAX_REFERENCE_ROWS:  # a fixed sample: same reference every run
            picked = np.sort(
                np.random.default_rng(0).choice(table.num_rows, _MAX_REFERENCE_ROWS, replace=False)
            )
            table = table.take(pa.array(picked))
        columns: dict[str, Any] = {f: table[f] for f in features if f in table.column_names}
        kinds: dict[str, str] = {}
        if want_prediction and probability and predicted in table.column_names:
            columns["prediction"] = table[predicted]
            kinds["prediction"] = "numeric"
        elif want_prediction and label is not None and label in table.column_names:
            columns["prediction"] = table[label]
            kinds["prediction"] = _label_kind(table[label])
        reference = Reference.from_columns(columns, kinds=kinds or None)
        with self._lock:
            self._references[key] = (reference, ref_name)
            while len(self._references) > _REFERENCE_CACHE:
                self._references.popitem(last=False)
        return reference, label, ref_name

    # --- performance ---------------------------------------------------------------------------

    def _performance(self, project_uid: str, spec: s.MonitorSpec, window: Window) -> Outcome | str:
        current = self.captures.read(project_uid, spec.endpoint, window)
        if current is None or not current.num_rows:
            return "no captured rows in the window; is capture on?"
        probability = _probability_class(spec.prediction_source)
        prediction = next((c for c in PREDICTION_COLUMNS if c in current.column_names), None)
        if probability is not None:
            prediction = _predicted_column(spec)
            if prediction not in current.column_names:
                return _no_probabilities(spec.endpoint, prediction)
            current = current.filter(pc.is_valid(current[prediction]))  # answered with them
        if prediction is None:
            return "the captured answers carry no single prediction to compare"
        request_ids = current["request_id"].to_pylist()
        labels = self._labels(project_uid, spec.endpoint, set(request_ids))
        keys = zip(request_ids, current["row"].to_pylist(), strict=True)
        matched = [i for i, k in enumerate(keys) if k in labels]
        if len(matched) < spec.min_rows:
            return (
                f"{len(matched)} captured rows in the window have ground truth, fewer than "
                f"min_rows ({spec.min_rows}); post labels with stratus monitors ground-truth"
            )
        taken = current.take(pa.array(matched))
        truth = [labels[(r, i)] for r, i in zip(
            taken["request_id"].to_pylist(), taken["row"].to_pylist(), strict=True)]  # fmt: skip
        positive = spec.positive
        if probability is None:
            predicted = taken[prediction].to_pylist()
            scores = _scores(taken)
        else:  # the most probable class is the label; the class's probability the score
            predicted, scores = _from_probabilities(taken, prediction, truth)
            if positive is None:
                positive = _as_label(probability, truth)
        task = spec.task or performance.infer_task(truth)
        if probability is not None and task == "regression":
            raise InvalidInput(
                f"prediction_source {spec.prediction_source!r} scores a classifier; a "
                "regression monitor compares values: set prediction_source: label"
            )
        by_version: dict[str, dict[str, float | None]] = {}
        versions = taken["model_version"].to_pylist()
        groups: dict[str, list[int]] = {}
        for i, version in enumerate(versions):
            groups.setdefault(version, []).append(i)
        overall = self._metrics(task, truth, predicted, scores, positive)
        for version, rows in sorted(groups.items()):
            by_version[version] = self._metrics(
                task,
                [truth[i] for i in rows],
                [predicted[i] for i in rows],
                None if scores is None else [scores[i] for i in rows],
                positive,
            )
        breaches = _breaches(overall, spec.bounds)
        judged = {  # each version on its own: a canary may fail while the whole holds
            v: _breaches(m, spec.bounds)
            for v, m in by_version.items()
            if spec.per_version and len(by_version) > 1 and len(groups[v]) >= spec.min_rows
        }
        breaches += [f"{v}: {b}" for v, found in judged.items() for b in found]
        headline = "accuracy" if task == "classification" else "rmse"
        message = f"{len(matched)} labelled rows; {headline} {_fmt(overall.get(headline))}" + (
            f"; out of bounds: {', '.join(breaches)}" if breaches else ""
        )
        times = taken["time"]
        return Outcome(
            start=as_utc(pc.min(times).as_py()),
            end=as_utc(pc.max(times).as_py()),
            rows=len(matched),
            alarm=bool(breaches),
            score=overall.get(headline),
            reference="ground truth",
            report={
                "task": task,
                "rows": len(matched),
                "captured_rows": current.num_rows,
                "metrics": overall,
                "versions": {
                    v: {
                        "rows": len(groups[v]),
                        "metrics": m,
                        "judged": v in judged,
                        "breaches": judged.get(v, []),
                    }
                    for v, m in by_version.items()
                },
                "breaches": breaches,
            },
            message=message,
        )

    @staticmethod
    def _metrics(
        task: str,
        truth: list[Any],
        predicted: list[Any],
        scores: list[float] | None,
        positive: Any,
    ) -> dict[str, float | None]:
        if task == "regression":
            try:
                return performance.regression(truth, predicted)
            except (TypeError, ValueError):
                raise InvalidInput(
                    "regression needs numeric labels and predictions; set task: classification"
                ) from None
        return performance.classification(truth, predicted, scores, positive)

    def _labels(
        self, project_uid: str, endpoint: str, request_ids: Iterable[str]
    ) -> dict[tuple[str, int], Any]:
        wanted = sorted(request_ids)
        found: dict[tuple[str, int], Any] = {}
        with self.db.transaction() as session:
            for start in range(0, len(wanted), 500):
                rows = session.execute(
                    select(
                        GroundTruthRow.request_id, GroundTruthRow.row, GroundTruthRow.label
                    ).where(
                        GroundTruthRow.project_uid == project_uid,
                        GroundTruthRow.endpoint == endpoint,
                        GroundTruthRow.request_id.in_(wanted[start : start + 500]),
                    )
                ).all()
                for request_id, index, label in rows:
                    found[(request_id, index)] = label
        return found

    # --- ground truth ----------------------------------------------------------------------

    def post_ground_truth(
        self, project: str, endpoint: str, data: s.GroundTruthPost
    ) -> s.GroundTruthResult:
        """Store (or replace) the true outcome of captured rows, by request id and row.

        Every (request id, row) must have been captured (else NotFound naming it, nothing is
        stored), and each label must be of the kind the model predicts (InvalidInput).
        """
        self.endpoints.get(project, endpoint)
        latest: dict[tuple[str, int], Any] = {}
        for item in data.labels:
            latest[(item.request_id, item.row)] = item.label  # the last one given wins
        project_uid = self.project_uid(project)
        captured = self.captures.captured(project_uid, endpoint, {rid for rid, _ in latest})
        _check_captured(endpoint, latest, captured)
        _check_kinds(latest, captured, self._tasks(project_uid, endpoint))
        with self.db.transaction() as session:
            keys = sorted(latest)
            replaced = 0
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                ids = sorted({k[0] for k in chunk})
                existing = {
                    (r.request_id, r.row): r
                    for r in session.scalars(
                        select(GroundTruthRow).where(
                            GroundTruthRow.project_uid == project_uid,
                            GroundTruthRow.endpoint == endpoint,
                            GroundTruthRow.request_id.in_(ids),
                        )
                    )
                }
                now = utcnow()
                for key in chunk:
                    row = existing.get(key)
                    if row is None:
                        session.add(
                            GroundTruthRow(
                                project_uid=project_uid,
                                endpoint=endpoint,
                                request_id=key[0],
                                row=key[1],
                                label=latest[key],
                                time=now,
                            )
                        )
                    else:
                        row.label, row.time = latest[key], now
                        replaced += 1
        return s.GroundTruthResult(received=len(data.labels), stored=len(latest), replaced=replaced)

    def _tasks(self, project_uid: str, endpoint: str) -> set[str]:
        """The tasks the endpoint's performance monitors name (`task`), if any."""
        with self.db.transaction() as session:
            specs = session.scalars(
                select(MonitorRow.spec).where(
                    MonitorRow.project_uid == project_uid, MonitorRow.endpoint == endpoint
                )
            ).all()
        return {
            str(spec["task"])
            for spec in specs
            if spec.get("type") == "performance" and spec.get("task")
        }

    # --- metrics ----------------------------------------------------------------------------

    def load_latest(self) -> None:
        """Fill `latest` from the database (at start), so gauges survive a restart."""
        with self.db.transaction() as session:
            for row in session.scalars(select(MonitorRow)):
                result = session.scalars(
                    select(MonitorResultRow)
                    .where(MonitorResultRow.monitor_uid == row.uid)
                    .order_by(MonitorResultRow.id.desc())
                    .limit(1)
                ).first()
                if result is None:
                    continue
                project = self._project_name(session, row.project_uid)
                spec = s.MonitorSpec.model_validate(row.spec)
                self.latest[row.uid] = _latest_of(project, row, spec.type, result)

    # --- helpers -------------------------------------------------------------------------------

    def project_uid(self, project: str) -> str:
        with self.db.transaction() as session:
            return self._project_uid(session, project)

    def _monitor(self, session: Session, project: str, name: str) -> MonitorRow:
        return self._monitors.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _read(session: Session, row: MonitorRow, project: str) -> s.MonitorRead:
        state = session.get(MonitorStateRow, row.uid)
        return s.MonitorRead(
            metadata=metadata_of(row, project=project),
            spec=s.MonitorSpec.model_validate(row.spec),
            status=s.MonitorStatus.model_validate(state.status if state is not None else {}),
        )


@dataclass
class Outcome:
    start: datetime | None
    end: datetime | None
    rows: int
    alarm: bool
    score: float | None
    reference: str
    report: dict[str, Any]
    message: str
    drift: DriftReport | None = None

    def latest(self, project: str, endpoint: str, monitor: str, kind: str) -> Latest:
        features = {}
        if self.drift is not None:
            features = {f.name: f.score for f in self.drift.features if f.score is not None}
        versions = {
            v: {k: x for k, x in body["metrics"].items() if x is not None}
            for v, body in self.report.get("versions", {}).items()
        }
        alarms = _version_alarms(self.report)
        return Latest(
            project, endpoint, monitor, kind, self.alarm, self.score, features, versions, alarms
        )


def _latest_of(project: str, row: MonitorRow, kind: str, result: MonitorResultRow) -> Latest:
    report = result.report or {}
    features = {
        f["name"]: f["score"] for f in report.get("features", []) if f.get("score") is not None
    }
    versions = {
        v: {k: x for k, x in body.get("metrics", {}).items() if x is not None}
        for v, body in report.get("versions", {}).items()
    }
    return Latest(
        project,
        row.endpoint,
        row.name,
        kind,
        result.alarm,
        result.score,
        features,
        versions,
        _version_alarms(report),
    )


def _version_alarms(report: dict[str, Any]) -> dict[str, bool]:
    """Per model version a performance monitor judged on its own: whether it broke a bound."""
    return {
        v: bool(body.get("breaches"))
        for v, body in report.get("versions", {}).items()
        if body.get("judged")
    }


def _result_read(result: MonitorResultRow, monitor: MonitorRow) -> s.MonitorResultRead:
    return s.MonitorResultRead(
        id=result.id,
        monitor=monitor.name,
        endpoint=monitor.endpoint,
        type=s.MonitorSpec.model_validate(monitor.spec).type,
        time=as_utc(result.time),
        window_start=as_utc(result.window_start) if result.window_start else None,
        window_end=as_utc(result.window_end) if result.window_end else None,
        rows=result.rows,
        alarm=result.alarm,
        score=result.score,
        reference=result.reference,
        report=result.report,
    )


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def _label_kind(column: pa.ChunkedArray) -> str:
    kind = column.type
    if pa.types.is_floating(kind):
        return "numeric"
    if pa.types.is_integer(kind):
        distinct = pc.count_distinct(column).as_py() or 0
        return "categorical" if distinct <= _CATEGORICAL_LABEL_LIMIT else "numeric"
    return "categorical"


def _scores(table: pa.Table) -> list[float] | None:
    """A probability-like score of the positive class, when the answer carried one."""
    for name in ("prediction.probability", "prediction.proba", "prediction.score"):
        if name in table.column_names:
            values = table[name].to_pylist()
            if all(isinstance(v, (int, float)) for v in values):
                return [float(v) for v in values]
    return None


def _probability_class(source: str) -> str | None:
    """The class whose probability a monitor takes as the prediction (None: the label).

    Raises:
        InvalidInput: `source` is neither `label` nor `probability:CLASS`.
    """
    if source == s.PREDICTION_SOURCE_DEFAULT:
        return None
    kind, colon, name = source.partition(":")
    if kind.strip() != "probability" or not colon or not name.strip():
        raise InvalidInput(
            f"prediction_source {source!r} is not 'label' or 'probability:CLASS' (the "
            "probability the answer gave one class, e.g. probability:1)",
            prediction_source=source,
        )
    return name.strip()


def _predicted_column(spec: s.MonitorSpec) -> str:
    """The capture column holding what the monitor takes as the prediction."""
    wanted = _probability_class(spec.prediction_source)
    return PREDICTION_COLUMNS[0] if wanted is None else f"{PROBABILITY}.{wanted}"


def _no_probabilities(endpoint: str, column: str) -> str:
    return (
        f"the captured answers of {endpoint!r} in the window carry no {column!r}: call the "
        "endpoint with method predict_proba (stratus predict --proba; v2 and plain: "
        '"parameters": {"method": "predict_proba"}; MLflow: "params") so that its probabilities '
        "are captured, or check the class name"
    )


def _from_probabilities(
    table: pa.Table, column: str, truth: list[Any]
) -> tuple[list[Any], list[float]]:
    """The most probable class of each row (as the truth spells it) and one class's
    probability, from the `probability.CLASS` columns of `predict_proba` answers."""
    names = [c for c in table.column_names if c.startswith(f"{PROBABILITY}.")]
    matrix = np.column_stack(
        [np.asarray(table[c].to_numpy(zero_copy_only=False), dtype=np.float64) for c in names]
    )
    best = np.nanargmax(np.where(np.isnan(matrix), -np.inf, matrix), axis=1)
    classes = [_as_label(c[len(PROBABILITY) + 1 :], truth) for c in names]
    predicted = [classes[i] for i in best]
    scores = np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=np.float64)
    return predicted, scores.tolist()


def _as_label(name: str, truth: list[Any]) -> Any:
    """A class name as the ground truth spells that class (1 for "1"), else the name."""
    for label in truth:
        if class_name(label) == name:
            return label
    return name


def _check_captured(
    endpoint: str, labels: dict[tuple[str, int], Any], captured: dict[str, CapturedRequest]
) -> None:
    """Each labelled (request id, row) was captured: else NotFound, naming the first."""
    unknown = sorted({rid for rid, _ in labels if rid not in captured})
    if unknown:
        more = f" (and {len(unknown) - 1} more request ids)" if len(unknown) > 1 else ""
        raise NotFound(
            f"endpoint {endpoint!r} captured no request {unknown[0]!r}{more}: ground truth is "
            "kept only for captured requests (is capture on, did the sample take it, has it "
            "expired or been erased?)",
            request_ids=unknown[:100],
        )
    for (rid, row), _ in sorted(labels.items()):
        rows = captured[rid].rows
        if row >= rows:
            had = "1 row (row 0)" if rows == 1 else f"{rows} rows (0 to {rows - 1})"
            raise NotFound(
                f"request {rid!r} of endpoint {endpoint!r} had {had}: it has no row {row}",
                request_id=rid,
                row=row,
            )


#: The label kinds each kind of captured prediction accepts (CSV readers turn "1" into 1).
_LABEL_KINDS: dict[str, tuple[str, str]] = {
    "integer": ("int", "an integer class, like its predictions"),
    "bool": ("int", "a class: true/false or 1/0, like its predictions"),
    "number": ("number", "a number, like its predictions"),
    "string": ("class", "a class name, like its predictions"),
}


def _check_kinds(
    labels: dict[tuple[str, int], Any], captured: dict[str, CapturedRequest], tasks: set[str]
) -> None:
    """A label of the wrong kind for the task is refused (a string for a regressor, `banana`
    for a classifier of integer classes): it could never match a prediction."""
    for (rid, row), label in sorted(labels.items(), key=lambda kv: kv[0]):
        kind = captured[rid].label_kind
        if "regression" in tasks and "classification" not in tasks:
            kind = "number"
        if kind not in _LABEL_KINDS:
            continue
        wants, say = _LABEL_KINDS[kind]
        if _label_fits(label, wants):
            continue
        task = "regressor" if kind == "number" else "classifier"
        raise InvalidInput(
            f"label {label!r} for request {rid!r} row {row} is not of this {task}'s kind: "
            f"it needs {say}",
            request_id=rid,
            row=row,
        )


def _label_fits(label: Any, wants: str) -> bool:
    if wants == "number":
        return type(label) in (int, float)
    if wants == "int":
        return type(label) in (int, bool) or (type(label) is float and label.is_integer())
    return type(label) in (str, int, bool)  # class names; "1" may have been read as 1


def _breaches(metrics: dict[str, float | None], bounds: s.PerformanceBounds) -> list[str]:
    out = []
    for name, low in bounds.min.items():
        value = metrics.get(name)
        if value is not None and value < low:
            out.append(f"{name} {value:.4g} < {low:g}")
    for name, high in bounds.max.items():
        value = metrics.get(name)
        if value is not None and value > high:
            out.append(f"{name} {value:.4g} > {high:g}")
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
