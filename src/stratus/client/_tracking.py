"""The SDK's tracking API (`client.experiments`): experiments, runs, batches of params,
metrics and tags, artifacts, and comparisons. Training code usually goes through
`stratus.tracking.start_run` (`_runs.py`), which is built on this."""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stratus.client._base import (
    API,
    LocalFile,
    Progress,
    key_path,
    labels_of,
    local_files,
    seg,
    upload_files,
    write_atomically,
)
from stratus.core.errors import InvalidInput, NotFound
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.tracking import schemas as ts

MetricPoint = Mapping[str, Any]  # {"key", "value", "step"?, "timestamp"?}


def metric_json(value: float) -> float | str:
    """A metric value as JSON can carry it: NaN and ±infinity become strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class Experiments(API):
    """Experiments and their runs: params, metric series, tags, artifacts, comparisons."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/experiments"

    def _run_path(self, run_id: str, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/runs/{seg(run_id)}"

    # --- experiments -------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> ts.ExperimentRead:
        """Create an experiment (`stratus.tracking.start_run` creates it when needed)."""
        body = {"name": name, "description": description, "labels": labels_of(labels)}
        return self._c._model(ts.ExperimentRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[ts.ExperimentRead]:
        return list(
            self._c._pages(
                ts.ExperimentRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"selector": selector},
            )
        )

    def get(self, name: str, project: str | None = None) -> ts.ExperimentRead:
        return self._c._model(ts.ExperimentRead, "GET", f"{self._base(project)}/{seg(name)}")

    def update(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> ts.ExperimentRead:
        """Change an experiment's description or labels."""
        body = {"description": description, "labels": labels}
        body = {k: v for k, v in body.items() if v is not None}
        path = f"{self._base(project)}/{seg(name)}"
        return self._c._model(ts.ExperimentRead, "PATCH", path, json=body)

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        """Delete an experiment; with `force`, also its runs and their artifacts."""
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}", params=params)

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        experiment: str,
        *,
        project: str | None = None,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ts.RunRead:
        """Start a run in an existing experiment (state `running`)."""
        body = {"name": name, "params": dict(params or {}), "tags": dict(tags or {})}
        path = f"{self._base(project)}/{seg(experiment)}/runs"
        return self._c._model(ts.RunRead, "POST", path, json=body)

    def runs(
        self, experiment: str, project: str | None = None, state: str | None = None
    ) -> builtins.list[ts.RunRead]:
        """An experiment's runs, newest first, with their params, tags and latest metrics."""
        path = f"{self._base(project)}/{seg(experiment)}/runs"
        return list(self._c._pages(ts.RunRead, path, {"state": state}))

    def run(self, run_id: str, project: str | None = None) -> ts.RunRead:
        return self._c._model(ts.RunRead, "GET", self._run_path(run_id, project))

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Iterable[MetricPoint] = (),
        tags: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> ts.RunRead:
        """Log params, metric points and tags in one call (one transaction on the server).

        Args:
            run_id: the run.
            params: written once per key: another value for a key is a `Conflict`, and
                nothing of the batch is kept.
            metrics: points `{"key", "value", "step", "timestamp"}` (step defaults to 0,
                timestamp to the server's clock); NaN and ±infinity are kept as such.
            tags: set or replace tags.
            project: the project (default: the client's).

        Raises:
            stratus.errors.Conflict: a param already has another value, or the run ended.
            stratus.errors.InvalidInput: more than 100 params, 1000 points or 100 tags.
        """
        points = []
        for point in metrics:
            item = {"key": point["key"], "value": metric_json(float(point["value"]))}
            if point.get("step") is not None:
                item["step"] = int(point["step"])
            if point.get("timestamp") is not None:
                stamp = point["timestamp"]
                item["timestamp"] = stamp if isinstance(stamp, str) else stamp.isoformat()
            points.append(item)
        body = {"params": dict(params or {}), "metrics": points, "tags": dict(tags or {})}
        path = self._run_path(run_id, project) + "/log"
        return self._c._model(ts.RunRead, "POST", path, json=body)

    def set_tags(
        self, run_id: str, tags: Mapping[str, str | None], project: str | None = None
    ) -> ts.RunRead:
        """Set tags of a run (ended or not); a value of None removes the tag."""
        path = self._run_path(run_id, project)
        return self._c._model(ts.RunRead, "PATCH", path, json={"tags": dict(tags)})

    def end_run(
        self,
        run_id: str,
        state: str = "finished",
        *,
        tags: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> ts.RunRead:
        """End a running run: `finished`, `failed` or `killed` (ending it again the same way
        does nothing), setting `tags` with it."""
        body: dict[str, Any] = {"state": state}
        if tags:
            body["tags"] = dict(tags)
        return self._c._model(ts.RunRead, "PATCH", self._run_path(run_id, project), json=body)

    def delete_run(self, run_id: str, project: str | None = None) -> None:
        self._c._send("DELETE", self._run_path(run_id, project))

    def metrics(self, run_id: str, project: str | None = None) -> builtins.list[ts.MetricSummary]:
        """Each metric of a run: latest value and step, point count, finite min and max."""
        data = self._c._json("GET", self._run_path(run_id, project) + "/metrics")
        return [ts.MetricSummary.model_validate(m) for m in data]

    def metric_history(
        self, run_id: str, key: str, project: str | None = None
    ) -> builtins.list[ts.MetricPointRead]:
        """Every point of a metric, in step order."""
        path = f"{self._run_path(run_id, project)}/metrics/{key_path(key)}"
        return list(self._c._pages(ts.MetricPointRead, path, {"limit": 1000}))

    def compare(
        self,
        run_ids: Iterable[str] | None = None,
        *,
        experiment: str | None = None,
        limit: int = 20,
        project: str | None = None,
    ) -> ts.RunComparison:
        """Runs side by side: each param and latest metric, one value per run.

        Args:
            run_ids: the runs, in the order to show them; or else
            experiment: an experiment, whose `limit` newest runs are compared.
            limit: how many runs of the experiment (at most 100).
            project: the project (default: the client's).
        """
        ids = builtins.list(run_ids or [])
        if bool(ids) == (experiment is not None):
            raise InvalidInput("compare either runs or an experiment")
        params: dict[str, Any] = {"run_id": ids} if ids else {"experiment": experiment}
        params["limit"] = limit
        path = f"/api/v1/projects/{self._project(project)}/runs/compare"
        return self._c._model(ts.RunComparison, "GET", path, params=params)

    # --- artifacts ---------------------------------------------------------------------------

    def log_artifact(
        self,
        run_id: str,
        path: str | Path,
        artifact_path: str | None = None,
        *,
        project: str | None = None,
        progress: Progress | None = None,
    ) -> builtins.list[ts.ArtifactRead]:
        """Upload a file, or a folder's files, into a running run.

        A file lands at `artifact_path/<its name>`, a folder's files at
        `artifact_path/<folder name>/<relative path>` (without `artifact_path`, at the
        top). Bytes the project already stores are not sent again.

        Returns:
            The artifacts written.
        """
        local = Path(path)
        prefix = "/".join(p for p in (artifact_path or "").split("/") if p)
        files: builtins.list[LocalFile] = []
        for rel, file, sha, size in local_files(local):
            dest = rel if local.is_file() else f"{local.name}/{rel}"
            files.append((f"{prefix}/{dest}" if prefix else dest, file, sha, size))
        base = self._run_path(run_id, project) + "/artifacts"
        body = {
            "files": [{"path": rel, "sha256": sha, "size": size} for rel, _, sha, size in files]
        }
        declared = self._c._json("POST", base, json=body)
        stored = {a["path"] for a in declared if a["stored"]}
        upload_files(self._c, base, files, stored, progress)
        wanted = {rel for rel, _, _, _ in files}
        return [a for a in self.artifacts(run_id, project) if a.path in wanted]

    def artifacts(self, run_id: str, project: str | None = None) -> builtins.list[ts.ArtifactRead]:
        path = self._run_path(run_id, project) + "/artifacts"
        return list(self._c._pages(ts.ArtifactRead, path, {}))

    def download_artifacts(
        self, run_id: str, dest: str | Path, path: str | None = None, project: str | None = None
    ) -> Path:
        """Download a run's artifacts (all, or `path` and what lies below it) into the folder
        `dest`, verified and written atomically per file."""
        root = Path(dest)
        chosen = [
            a
            for a in self.artifacts(run_id, project)
            if a.stored and (path is None or a.path == path or a.path.startswith(path + "/"))
        ]
        if path is not None and not chosen:
            raise NotFound(f"run {run_id} has no artifact {path!r}")
        base = self._run_path(run_id, project) + "/artifacts"
        for artifact in chosen:
            target = root / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            chunks = self._c._stream_verified(f"{base}/{key_path(artifact.path)}", artifact.path)
            write_atomically(target, chunks)
        return root
