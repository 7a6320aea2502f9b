"""The SDK's training jobs API: run user code, a built-in trainer or an evaluation of model
versions on the compute backend, follow its logs, wait for it, cancel it."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from stratus.client._archives import code_files, pack
from stratus.client._base import API, Progress, labels_of, seg
from stratus.core.errors import InvalidInput, ServiceUnavailable
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.jobs import schemas as js


class Jobs(API):
    """Training jobs: `run`, `list`, `get`, `logs`, `wait`, `cancel`, `delete`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/jobs"

    def run(
        self,
        *,
        code: str | Path | None = None,
        entrypoint: str | None = None,
        args: builtins.list[str] | None = None,
        requirements: builtins.list[str] | None = None,
        trainer: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        batch_predict: dict[str, Any] | None = None,
        dataset: str | None = None,
        instance_type: str = "cpu.small",
        spot: bool = False,
        name: str | None = None,
        experiment: str | None = None,
        model: str | None = None,
        env: dict[str, str] | None = None,
        secrets: builtins.list[str] | None = None,
        timeout_seconds: int | None = None,
        grace_seconds: int | None = None,
        max_retries: int = 0,
        labels: dict[str, str] | None = None,
        project: str | None = None,
        progress: Progress | None = None,
    ) -> js.JobRead:
        """Submit a training job and return at once (it queues until there is room).

        Args:
            code: a folder to run (uploaded with the job; unchanged code is not sent again).
            entrypoint: the script in `code` to run, e.g. `train.py`.
            args: its command-line arguments.
            requirements: pip requirement lines installed for the job.
            trainer: a built-in trainer instead of code: `{"estimator":
                "sklearn.linear_model.LogisticRegression", "params": {...}, "label": ...}`.
            evaluation: score registered model versions on `dataset` instead: `{"models":
                ["churn@production", "churn:4"], "label": ..., "features": [...]}`; each
                reference is pinned to NAME:VERSION at submit, and the job's
                `status.evaluations` holds the metrics per NAME:VERSION.
            batch_predict: predictions of a model version for every row of `dataset`,
                committed as a new version of a dataset: `{"model": "churn@production",
                "output_dataset": "churn-scores", "batch_rows": 10000}` (see
                `client.batch.predict`, which waits and shows progress).
            dataset: `NAME` or `NAME:VERSION`, pulled for the job (pinned at submit).
            instance_type: from the catalog (`instance_types()`): sets enforced limits.
            spot: preemptible and cheaper; the job should save `stratus.training.checkpoint()`.
            model: register the trained model under this name, with its lineage.
            secrets: project secrets (`client.secrets.set`) the code gets as environment
                variables: `NAME`, or `VARIABLE=NAME`; their values never appear in the
                job's spec or logs.

        Returns:
            The job, `pending` until its code is uploaded, then `queued`.
        """
        body: dict[str, Any] = {
            "name": name,
            "labels": labels or {},
            "instance_type": instance_type,
            "spot": spot,
            "dataset": dataset,
            "experiment": experiment,
            "model": model,
            "env": env or {},
            "max_retries": max_retries,
        }
        if secrets:
            body["secrets"] = list(secrets)
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        if grace_seconds is not None:
            body["grace_seconds"] = grace_seconds
        archive = None
        if code is not None:
            folder = Path(code)
            files = code_files(folder)
            entry = entrypoint or ("train.py" if (folder / "train.py").is_file() else None)
            if entry is None:
                raise InvalidInput("give the entrypoint: the script in the code folder to run")
            if entry not in {rel for rel, _ in files}:
                raise InvalidInput(f"entrypoint {entry!r} is not a file of {folder}")
            archive, sha, size, content = pack(folder, files)
            body["code"] = {
                "sha256": sha,
                "size": size,
                "content_hash": content,
                "entrypoint": entry,
                "args": args or [],
                "requirements": requirements or [],
            }
        if trainer is not None:
            body["trainer"] = trainer
        if evaluation is not None:
            body["evaluation"] = evaluation
        if batch_predict is not None:
            body["batch_predict"] = batch_predict
        base = self._base(project)
        try:
            response = self._c._send("POST", base, json=body)
            job = js.JobRead.model_validate(response.json())
            if archive is not None and response.headers.get("x-stratus-upload-code") == "true":

                def chunks() -> Iterator[bytes]:
                    assert archive is not None
                    while chunk := archive.read(1 << 20):
                        if progress:
                            progress(len(chunk))
                        yield chunk

                job = self._c._model(
                    js.JobRead,
                    "PUT",
                    f"{base}/{seg(job.metadata.name)}/code",
                    content=chunks(),
                    headers={"content-length": str(body["code"]["size"])},
                )
        finally:
            if archive is not None:
                archive.close()
        return job

    def list(
        self,
        project: str | None = None,
        phase: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        all_projects: bool = False,
    ) -> builtins.list[js.JobRead]:
        params: dict[str, Any] = {}
        if phase:
            params["phase"] = phase
        if labels:
            params["selector"] = labels_of(labels)
        return list(
            self._c._pages(
                js.JobRead, self._base(ALL_PROJECTS if all_projects else project), params
            )
        )

    def get(self, name: str, project: str | None = None) -> js.JobRead:
        return self._c._model(js.JobRead, "GET", f"{self._base(project)}/{seg(name)}")

    def cancel(self, name: str, project: str | None = None) -> js.JobRead:
        """Cancel: a waiting job at once, a running one after SIGTERM and its grace period."""
        return self._c._model(js.JobRead, "POST", f"{self._base(project)}/{seg(name)}/cancel")

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")

    def logs(
        self, name: str, project: str | None = None, *, follow: bool = False, offset: int = 0
    ) -> Iterator[bytes]:
        """The job's output from `offset`; with `follow`, until the job finishes (a dropped
        connection is picked up again where it stopped)."""
        path = f"{self._base(project)}/{seg(name)}/logs"
        position = offset
        while True:
            try:
                for chunk in self._c._stream(path, {"follow": follow, "offset": position}):
                    position += len(chunk)
                    yield chunk
                return
            except (httpx.TransportError, ServiceUnavailable):
                if not follow:
                    raise
                time.sleep(1.0)

    def wait(
        self,
        name: str,
        project: str | None = None,
        *,
        timeout: float | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        interval: float = 1.0,
    ) -> js.JobRead:
        """Poll until the job has finished (succeeded, failed or cancelled), calling `progress`
        with the work done and in all (`status.progress`: a batch prediction's rows)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(name, project)
            if progress is not None and job.status.progress is not None:
                progress(job.status.progress.done, job.status.progress.total)
            if job.status.phase.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {name!r} is still {job.status.phase.value} after {timeout:g} s"
                )
            time.sleep(interval)

    def instance_types(self) -> builtins.list[js.InstanceTypeRead]:
        """The catalog: vCPU, memory, GPU and the hourly price on demand and on spot."""
        data = self._c._json("GET", "/api/v1/instance-types")
        return [js.InstanceTypeRead.model_validate(item) for item in data]

    # --- for the job's own runner --------------------------------------------------------------

    def report(self, name: str, project: str | None = None, **fields: Any) -> js.JobRead:
        return self._c._model(
            js.JobRead, "POST", f"{self._base(project)}/{seg(name)}/report", json=fields
        )
