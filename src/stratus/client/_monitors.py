"""The SDK's monitoring API: an endpoint's captured records and capture files, ground truth,
ad hoc drift reports, monitors and their history, and erasure of a data subject."""

from __future__ import annotations

import builtins
import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from stratus.client._base import API, labels_of, read_yaml, seg, write_atomically
from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.monitoring import schemas as ms

_LABEL_CHUNK = 10_000


def _window(seconds: int | None, rows: int | None) -> dict[str, Any] | None:
    if seconds is None and rows is None:
        return None
    return {"seconds": seconds, "rows": rows}


def _when(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class Monitors(API):
    """Monitoring: `captures`, `capture_files`, `download_captures`, `drift`, `ground_truth`,
    `erase`, and monitors (`apply`, `list`, `get`, `delete`, `run`, `results`, `result`,
    `report_html`)."""

    def _endpoint(self, endpoint: str, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/endpoints/{seg(endpoint)}"

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/monitors"

    # --- captures ------------------------------------------------------------------------------

    def captures(
        self,
        endpoint: str,
        *,
        limit: int = 20,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        project: str | None = None,
    ) -> ms.CaptureRecords:
        """The newest captured rows of an endpoint (newest first), with their request ids,
        model versions, inputs and predictions."""
        params = {"limit": limit, "since": _when(since), "until": _when(until)}
        return self._c._model(
            ms.CaptureRecords,
            "GET",
            f"{self._endpoint(endpoint, project)}/captures",
            params={k: v for k, v in params.items() if v is not None},
        )

    def capture_files(
        self,
        endpoint: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        project: str | None = None,
    ) -> builtins.list[ms.CaptureFileRead]:
        """The endpoint's capture files (hourly Parquet), newest first."""
        params = {"since": _when(since), "until": _when(until)}
        response = self._c._send(
            "GET",
            f"{self._endpoint(endpoint, project)}/captures/files",
            params={k: v for k, v in params.items() if v is not None},
        )
        return [ms.CaptureFileRead.model_validate(f) for f in response.json()]

    def download_captures(
        self,
        endpoint: str,
        destination: str | Path,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        project: str | None = None,
    ) -> builtins.list[Path]:
        """Write the endpoint's capture files under `destination` in their partition layout
        (`endpoint=…/date=…/hour=…/part-….parquet`, readable by pyarrow, pandas or Spark as
        one dataset); files already there are skipped."""
        root = Path(destination)
        written = []
        for found in self.capture_files(endpoint, since=since, until=until, project=project):
            target = root / found.path
            if target.exists() and target.stat().st_size > 0:
                continue
            response = self._c._send(
                "GET", f"{self._endpoint(endpoint, project)}/captures/files/{seg(found.uid)}"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, [response.content])
            written.append(target)
        return written

    def erase(
        self, subject: str, *, endpoint: str | None = None, project: str | None = None
    ) -> ms.EraseResult:
        """Remove every captured record (and ground-truth label) of one data subject: the value
        of the endpoints' `capture.subject` input. A project owner's call; audited."""
        body = {"subject": subject, "endpoint": endpoint}
        return self._c._model(
            ms.EraseResult,
            "POST",
            f"/api/v1/projects/{self._project(project)}/captures/erase",
            json=body,
        )

    # --- ground truth --------------------------------------------------------------------------

    def ground_truth(
        self,
        endpoint: str,
        labels: Iterable[Mapping[str, Any]] | str | Path,
        *,
        project: str | None = None,
    ) -> ms.GroundTruthResult:
        """Post the true outcomes of captured rows: dicts of `request_id`, `row` (default 0)
        and `label`, or a CSV, JSON-lines or Parquet file with those columns. Sent in chunks;
        a label posted again replaces the earlier one."""
        items = _read_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
        if not items:
            raise InvalidInput("no labels to post")
        received = stored = replaced = 0
        url = f"{self._endpoint(endpoint, project)}/ground-truth"
        for start in range(0, len(items), _LABEL_CHUNK):
            chunk = [_label(item) for item in items[start : start + _LABEL_CHUNK]]
            result = self._c._model(ms.GroundTruthResult, "POST", url, json={"labels": chunk})
            received += result.received
            stored += result.stored
            replaced += result.replaced
        return ms.GroundTruthResult(received=received, stored=stored, replaced=replaced)

    # --- drift now -----------------------------------------------------------------------------

    def drift(
        self,
        endpoint: str,
        *,
        reference: str | None = None,
        window_seconds: int | None = None,
        window_rows: int | None = None,
        features: builtins.list[str] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        min_rows: int | None = None,
        project: str | None = None,
    ) -> ms.MonitorResultRead:
        """A drift report of the endpoint's recent captures against a reference (default: the
        dataset its model was trained on), now; nothing is kept."""
        body = self._drift_body(
            reference, window_seconds, window_rows, features, thresholds, min_rows
        )
        return self._c._model(
            ms.MonitorResultRead, "POST", f"{self._endpoint(endpoint, project)}/drift", json=body
        )

    def drift_html(
        self,
        endpoint: str,
        *,
        reference: str | None = None,
        window_seconds: int | None = None,
        window_rows: int | None = None,
        features: builtins.list[str] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        min_rows: int | None = None,
        project: str | None = None,
    ) -> str:
        """`drift`, as a self-contained HTML page with a chart per feature."""
        body = self._drift_body(
            reference, window_seconds, window_rows, features, thresholds, min_rows
        )
        response = self._c._send(
            "POST",
            f"{self._endpoint(endpoint, project)}/drift",
            params={"format": "html"},
            json=body,
        )
        return response.text

    @staticmethod
    def _drift_body(
        reference: str | None,
        window_seconds: int | None,
        window_rows: int | None,
        features: builtins.list[str] | None,
        thresholds: Mapping[str, Any] | None,
        min_rows: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"reference": reference, "features": features or []}
        window = _window(window_seconds, window_rows)
        if window is not None:
            body["window"] = window
        if thresholds:
            body["drift"] = dict(thresholds)
        if min_rows is not None:
            body["min_rows"] = min_rows
        return body

    # --- monitors ------------------------------------------------------------------------------

    def apply(
        self,
        spec: str | Path | Mapping[str, Any] | None = None,
        *,
        project: str | None = None,
        **fields: Any,
    ) -> ms.MonitorRead:
        """Create or replace a monitor: from a YAML file, a dict, or keyword fields
        (`name`, `endpoint`, `type`, `reference`, `window`, `interval_seconds`, `drift`, …)."""
        if isinstance(spec, (str, Path)):
            document = read_yaml(spec)
            if not isinstance(document, dict):
                raise InvalidInput(f"{spec}: expected a mapping (name, endpoint, type, …)")
        else:
            document = dict(spec or {})
        document.update(fields)
        if "labels" in document:
            document["labels"] = labels_of(document["labels"])
        response = self._c._send("PUT", self._base(project), json=document)
        return ms.MonitorRead.model_validate(response.json())

    def list(
        self, project: str | None = None, endpoint: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[ms.MonitorRead]:
        """A project's monitors (or one endpoint's)."""
        return list(
            self._c._pages(
                ms.MonitorRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"endpoint": endpoint},
            )
        )

    def get(self, name: str, project: str | None = None) -> ms.MonitorRead:
        return self._c._model(ms.MonitorRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None) -> None:
        """Delete a monitor and its history."""
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")

    def run(
        self,
        name: str,
        *,
        window_seconds: int | None = None,
        window_rows: int | None = None,
        project: str | None = None,
    ) -> ms.MonitorResultRead:
        """Run a monitor now; the result joins its history.

        Raises:
            stratus.errors.Conflict: too little data in the window (the detail says how much).
        """
        window = _window(window_seconds, window_rows)
        body = {"window": window} if window else {}
        return self._c._model(
            ms.MonitorResultRead, "POST", f"{self._base(project)}/{seg(name)}/run", json=body
        )

    def results(
        self, name: str, *, limit: int = 20, project: str | None = None
    ) -> builtins.list[ms.MonitorResultRead]:
        """The monitor's newest results, newest first."""
        response = self._c._send(
            "GET", f"{self._base(project)}/{seg(name)}/results", params={"limit": limit}
        )
        return [ms.MonitorResultRead.model_validate(r) for r in response.json()["items"]]

    def result(self, name: str, result: int, project: str | None = None) -> ms.MonitorResultRead:
        return self._c._model(
            ms.MonitorResultRead, "GET", f"{self._base(project)}/{seg(name)}/results/{result}"
        )

    def report_html(self, name: str, result: int, project: str | None = None) -> str:
        """A drift result as a self-contained HTML page."""
        response = self._c._send(
            "GET", f"{self._base(project)}/{seg(name)}/results/{result}/report.html"
        )
        return response.text


def _label(item: Mapping[str, Any]) -> dict[str, Any]:
    if "request_id" not in item or "label" not in item:
        raise InvalidInput("each label needs `request_id` and `label` (and `row` for row > 0)")
    out = {"request_id": str(item["request_id"]), "label": item["label"]}
    if item.get("row") not in (None, ""):
        out["row"] = int(item["row"])
    return out


def _read_labels(path: str | Path) -> builtins.list[dict[str, Any]]:
    """Labels from a CSV (header request_id,row,label), JSON-lines or Parquet file."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"{file}: no such file")
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows: builtins.list[dict[str, Any]] = pq.read_table(file).to_pylist()
        return rows
    text = file.read_text(encoding="utf-8")
    if suffix in (".jsonl", ".ndjson", ".json"):
        try:
            return [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{file}: not JSON lines ({exc})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row["label"] = label_from_text(row.get("label"))
    return rows


def label_from_text(value: str | None) -> Any:
    """A CSV cell as the label it spells: a number or boolean when it is one, else text."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
