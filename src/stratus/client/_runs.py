"""Runs for training code, published as `stratus.tracking`: start a run, log params, metrics,
tags, artifacts and a model with its lineage.

    import stratus.tracking as tracking

    with tracking.start_run(experiment="churn", name="lr-c1") as run:
        run.log_params({"C": 1.0})
        for epoch in range(10):
            run.log_metrics({"loss": loss, "acc": acc}, step=epoch)
        run.log_model("model.skops", name="churn", dataset_version="churn:3")

Metric points are buffered and sent in batches (when `flush_every` are waiting, when
`flush_seconds` have passed since the last send, and when the run ends); params and tags go
at once, so a param logged twice with different values fails where it is logged. The run ends
`finished`, or `failed` if the block raises (the exception goes on), or `killed` on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from stratus.client._client import Client
from stratus.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound, ServiceUnavailable
from stratus.registry import schemas as rg
from stratus.tracking import schemas as ts

log = logging.getLogger("stratus.tracking")

_KEY = re.compile(r"^[A-Za-z0-9_.\-/:]{1,250}$")
_active: list[ActiveRun] = []
_active_lock = threading.Lock()


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInput(
            f"{what} key {key!r} must be 1 to 250 letters, digits or _ - . / : characters"
        )
    return key


def param_value(value: Any) -> bool | int | float | str | None:
    """A param as the API takes it: JSON scalars as they are (numpy scalars unwrapped),
    NaN and infinity as text, anything else as JSON text or, failing that, its str()."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str):
        try:
            value = value.item()  # numpy and torch scalars
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _chunks(items: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
    pairs = list(items.items())
    return [dict(pairs[i : i + size]) for i in range(0, len(pairs), size)] or [{}]


class ActiveRun:
    """A run being logged to. Use it as a context manager, or call `end()`.

    Not made directly: `stratus.tracking.start_run` returns one.
    """

    def __init__(
        self,
        client: Client,
        run: ts.RunRead,
        project: str,
        *,
        owns_client: bool,
        flush_every: int,
        flush_seconds: float,
        ends_run: bool = True,
    ) -> None:
        self.client = client
        self._ends_run = ends_run  # False for a training job's run: the job ends it
        self.project = project
        self.info = run
        self._owns_client = owns_client
        self._flush_every = max(1, min(flush_every, ts.MAX_METRICS_PER_CALL))
        self._flush_seconds = flush_seconds
        self._points: list[dict[str, Any]] = []
        self._next_step: dict[str, int] = {}
        self._lock = threading.RLock()
        self._last_flush = time.monotonic()
        self._ended = run.state != "running"

    @property
    def id(self) -> str:
        """The run id (`run_…`): the model registry's lineage names it."""
        return self.info.id

    @property
    def experiment(self) -> str:
        return self.info.experiment

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.experiment}/{self.name or '-'}>"

    # --- logging -----------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params now. Each is written once: logging another value for a key raises
        `stratus.errors.Conflict` (the same value again is fine).

        Values are strings, numbers, booleans or None; numpy scalars are unwrapped and
        other objects are stored as JSON text (or their str())."""
        values = {_check_key(k, "param"): param_value(v) for k, v in params.items()}
        for chunk in _chunks(values, ts.MAX_PARAMS_PER_CALL):
            if chunk:
                self.info = self.client.experiments.log_batch(
                    self.id, params=chunk, project=self.project
                )

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: datetime | None = None
    ) -> None:
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Buffer metric points (sent in batches). Without `step`, each key counts its own
        steps: 0, then one more than its last. NaN and infinity are kept as such."""
        stamp = (timestamp or datetime.now().astimezone()).isoformat()
        with self._lock:
            for key, raw in metrics.items():
                _check_key(key, "metric")
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    raise InvalidInput(f"metric {key!r}: {raw!r} is not a number") from None
                at = self._next_step.get(key, 0) if step is None else int(step)
                if at < 0:
                    raise InvalidInput(f"metric {key!r}: step {at} must not be negative")
                self._next_step[key] = max(self._next_step.get(key, 0), at + 1)
                self._points.append({"key": key, "value": value, "step": at, "timestamp": stamp})
            due = (
                len(self._points) >= self._flush_every
                or time.monotonic() - self._last_flush >= self._flush_seconds
            )
        if due:
            self.flush()

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags now (they can change later, even after the run ended)."""
        values = {_check_key(k, "tag"): str(v) for k, v in tags.items()}
        for chunk in _chunks(values, ts.MAX_TAGS_PER_CALL):
            if chunk:
                self.info = self.client.experiments.set_tags(self.id, chunk, self.project)

    def flush(self) -> None:
        """Send the buffered metric points now. If the platform cannot be reached, they stay
        buffered for the next try."""
        with self._lock:
            points, self._points = self._points, []
            self._last_flush = time.monotonic()
            size = self._flush_every
            for start in range(0, len(points), size):
                try:
                    self.info = self.client.experiments.log_batch(
                        self.id, metrics=points[start : start + size], project=self.project
                    )
                except ServiceUnavailable:
                    self._points[:0] = points[start:]
                    raise

    def latest_metrics(self) -> dict[str, float]:
        """The latest value of each metric whose latest value is finite (NaN and infinity
        are left out), after sending what is buffered."""
        self.flush()
        self.info = self.client.experiments.run(self.id, self.project)
        return {
            k: float(v)
            for k, v in self.info.metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)
        }

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> list[str]:
        """Upload a file (to `artifact_path/<name>`) or a folder (to
        `artifact_path/<folder>/...`) into the run; returns the artifact paths written."""
        written = self.client.experiments.log_artifact(
            self.id, path, artifact_path, project=self.project
        )
        return [a.path for a in written]

    def log_model(
        self,
        path: str | Path,
        name: str,
        *,
        dataset_version: str | None = None,
        source_commit: str | None = None,
        flavor: str | None = None,
        signature: dict[str, Any] | None = None,
        sample: Any = None,
        trusted: bool = False,
        tags: dict[str, str] | None = None,
        description: str = "",
        card: str = "",
    ) -> rg.VersionRead:
        """Push a model file or folder into the registry as a new version of `name`, with
        this run's params and latest (finite) metrics, and lineage naming this run and, if
        given, the dataset version and source commit. The run gets a tag `model/<name>`
        naming the version.

        Returns:
            The model version.
        """
        metrics = self.latest_metrics()
        run = self.info
        version = self.client.models.push(
            path,
            name,
            project=self.project,
            flavor=flavor,
            trusted=trusted,
            signature=signature,
            sample=sample,
            metrics=metrics,
            params=dict(run.params),
            tags={"experiment": run.experiment, **(tags or {})},
            dataset_version=dataset_version,
            training_run=self.id,
            source_commit=source_commit,
            description=description,
            card=card,
        )
        self.set_tag(f"model/{name}", f"{version.model}:{version.version}")
        return version

    # --- ending ------------------------------------------------------------------------------

    def end(self, state: str = "finished", tags: Mapping[str, str] | None = None) -> None:
        """Send what is buffered and end the run (`finished`, `failed` or `killed`)."""
        if self._ended:
            return
        try:
            self.flush()
        except Exception:
            state = "failed" if state == "finished" else state
            raise
        finally:
            self._ended = True
            _forget(self)
            try:
                if self._ends_run:
                    self.info = self.client.experiments.end_run(
                        self.id, state, tags=tags, project=self.project
                    )
            finally:
                if self._owns_client:
                    self.client.close()

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("finished")
            return
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            self.end("finished")
            return
        state = "killed" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = f"{type(exc).__name__}: {exc}"[: ts.TAG_CHARS]
        try:
            self.end(state, tags={"error": error})
        except Exception:  # the user's exception matters more than a failed report of it
            log.warning("could not mark run %s %s", self.id, state, exc_info=True)


def _forget(run: ActiveRun) -> None:
    with _active_lock:
        if run in _active:
            _active.remove(run)


def start_run(
    experiment: str | None = None,
    name: str = "",
    *,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    client: Client | None = None,
    project: str | None = None,
    flush_every: int = ts.MAX_METRICS_PER_CALL,
    flush_seconds: float = 10.0,
    quiet: bool = False,
) -> ActiveRun:
    """Start a run (or continue a running one) and make it the active run. Inside a
    training job, `start_run()` with neither an experiment nor a run id logs into the job's
    own run (`STRATUS_RUN_ID`), which the job ends when it ends.

    It prints one line to stderr naming the run and how to see it (`stratus experiments show
    RUN_ID`), unless `quiet` (or inside a job, whose run the job already names).

    Args:
        experiment: the experiment's name; created if it does not exist.
        name: a name for the run (need not be unique).
        run_id: continue this running run instead of starting one; metrics without a step
            carry on from each key's last step.
        params: params to log at the start.
        tags: tags to set at the start.
        client: the platform to log to; default `stratus.Client()` (from `STRATUS_URL`,
            `STRATUS_API_KEY` or the credentials file), closed when the run ends.
        project: the project (default: the client's).
        flush_every: send buffered metric points once this many wait (at most 1000).
        flush_seconds: ...or once this long has passed since the last send.
        quiet: print nothing (by default one line on stderr names the run).

    Returns:
        The run; use it as a context manager so it ends `finished` or `failed`.

    Raises:
        stratus.errors.Conflict: `run_id` names a run that has ended.
        stratus.errors.NotFound: `run_id` names no run of the project.
    """
    job_run = os.environ.get("STRATUS_RUN_ID") if experiment is None and run_id is None else None
    if job_run:  # inside a training job: log into the job's run, which the job ends
        return _open(
            client,
            project,
            None,
            name,
            job_run,
            params,
            tags,
            flush_every,
            flush_seconds,
            ends_run=False,
        )
    if (experiment is None) == (run_id is None):
        raise InvalidInput("start_run needs an experiment, or the run_id of a run to continue")
    return _open(
        client,
        project,
        experiment,
        name,
        run_id,
        params,
        tags,
        flush_every,
        flush_seconds,
        announce=not quiet,
    )


def resume_run(
    run_id: str | None,
    *,
    experiment: str,
    name: str = "",
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    client: Client | None = None,
    project: str | None = None,
    flush_every: int = ts.MAX_METRICS_PER_CALL,
    flush_seconds: float = 10.0,
    quiet: bool = False,
) -> ActiveRun:
    """Continue the run `run_id` if it is still running; else (no id, or a run that ended or
    is gone) start a new run in `experiment`. For work that restarts, such as a preempted
    job: `.id` tells which it was.

    Args:
        run_id: the run an earlier attempt started, if any.
        experiment: where a new run goes (created if needed).
        name: the new run's name.
        params: params to log (a different value for a param the run has is a `Conflict`).
        tags: tags to set.
        client: as for `start_run`.
        project: as for `start_run`.
        flush_every: as for `start_run`.
        flush_seconds: as for `start_run`.
        quiet: as for `start_run`.
    """
    return _open(
        client,
        project,
        experiment,
        name,
        run_id or None,
        params,
        tags,
        flush_every,
        flush_seconds,
        fallback=True,
        announce=not quiet,
    )


def _open(
    client: Client | None,
    project: str | None,
    experiment: str | None,
    name: str,
    run_id: str | None,
    params: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    flush_every: int,
    flush_seconds: float,
    fallback: bool = False,
    ends_run: bool = True,
    announce: bool = False,
) -> ActiveRun:
    """Continue `run_id`, or (without one, or with `fallback` when it ended or is gone) start
    a run in `experiment`; then make it the active run."""
    values = {_check_key(k, "param"): param_value(v) for k, v in (params or {}).items()}
    owns = client is None
    sdk = client or Client()
    try:
        chosen = project or sdk.default_project
        run: ts.RunRead | None = None
        if run_id is not None:
            try:
                run = sdk.experiments.run(run_id, chosen)
            except NotFound:
                if not fallback:
                    raise
            if run is not None and run.state != "running":
                if not fallback:
                    raise Conflict(f"run {run_id} has ended ({run.state}): start a new run")
                run = None
        next_steps: dict[str, int] = {}
        if run is not None:
            if values or tags:
                run = sdk.experiments.log_batch(
                    run.id, params=values, tags=dict(tags or {}), project=chosen
                )
            next_steps = {m.key: m.step + 1 for m in sdk.experiments.metrics(run.id, chosen)}
        else:
            if experiment is None:
                raise InvalidInput("name the experiment a new run goes into")
            try:
                sdk.experiments.get(experiment, chosen)
            except NotFound:
                try:
                    sdk.experiments.create(experiment, project=chosen)
                except AlreadyExists:
                    pass  # another process made it first
            run = sdk.experiments.create_run(
                experiment, project=chosen, name=name, params=values, tags=dict(tags or {})
            )
    except BaseException:
        if owns:
            sdk.close()
        raise
    active = ActiveRun(
        sdk,
        run,
        chosen,
        owns_client=owns,
        flush_every=flush_every,
        flush_seconds=flush_seconds,
        ends_run=ends_run,
    )
    active._next_step.update(next_steps)
    with _active_lock:
        _active.append(active)
    if announce:
        _announce(run, continued=run_id is not None and run.id == run_id)
    return active


def _announce(run: ts.RunRead, continued: bool) -> None:
    """One line on stderr naming the run and how to see it (as MLflow's "View run ...")."""
    what = "continuing" if continued else "started"
    named = f" {run.name!r}" if run.name else ""
    print(
        f"stratus: {what} run {run.id}{named} in experiment {run.experiment!r} "
        f"(project {run.project}); see it with: stratus experiments show {run.id} "
        f"-p {run.project}",
        file=sys.stderr,
        flush=True,
    )


def active_run() -> ActiveRun | None:
    """The run started last and not ended yet, if any."""
    with _active_lock:
        return _active[-1] if _active else None


def _current() -> ActiveRun:
    run = active_run()
    if run is None and os.environ.get("STRATUS_RUN_ID"):
        run = start_run()  # a training job's code logs into the job's run
    if run is None:
        raise RuntimeError("no active run: start one with stratus.tracking.start_run(...)")
    return run


def end_run(state: str = "finished") -> None:
    """End the active run."""
    _current().end(state)


def log_param(key: str, value: Any) -> None:
    """Log a param of the active run."""
    _current().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Log params of the active run."""
    _current().log_params(params)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Log a metric point of the active run (buffered)."""
    _current().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log metric points of the active run (buffered)."""
    _current().log_metrics(metrics, step)


def set_tags(tags: Mapping[str, str]) -> None:
    """Set tags of the active run."""
    _current().set_tags(tags)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> list[str]:
    """Upload a file or folder into the active run."""
    return _current().log_artifact(path, artifact_path)


def log_model(path: str | Path, name: str, **options: Any) -> rg.VersionRead:
    """Push a model into the registry with the active run's lineage (see
    `ActiveRun.log_model`)."""
    return _current().log_model(path, name, **options)
