"""The SDK's batch inference: score every row of a dataset version with a model version, as a
job on the compute backend, into a new version of another dataset."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from stratus.client._base import API
from stratus.jobs import schemas as js

#: Called with (rows done, rows in all) as a batch prediction advances.
RowProgress = Callable[[int, int | None], None]


class BatchJobs(API):
    """Batch inference: `predict` runs a model over a dataset version as a job."""

    def predict(
        self,
        model: str,
        *,
        dataset: str,
        output_dataset: str,
        instance_type: str = "cpu.small",
        spot: bool = False,
        batch_rows: int | None = None,
        features: builtins.list[str] | None = None,
        keep: builtins.list[str] | None = None,
        prediction_column: str | None = None,
        name: str | None = None,
        max_retries: int = 0,
        timeout_seconds: int | None = None,
        labels: dict[str, str] | None = None,
        project: str | None = None,
        wait: bool = True,
        timeout: float | None = None,
        progress: RowProgress | None = None,
    ) -> js.JobRead:
        """Predict `model` for every row of `dataset` into a new version of `output_dataset`.

        The job streams the input in record batches of `batch_rows` rows (memory is bounded
        by a batch, not the dataset), resumes after the last finished batch when it is
        preempted or retried, and commits the predictions beside the kept input columns as
        one version with the same row count and its lineage (model version, input version).

        Args:
            model: `NAME:VERSION`, `NAME@ALIAS` or `NAME` (the latest); pinned at submit.
            dataset: the input, `NAME` or `NAME:VERSION`; pinned at submit.
            output_dataset: the dataset the predictions go to (created if new).
            instance_type: the job's instance type (`client.jobs.instance_types()`).
            spot: preemptible and cheaper; a preempted job resumes where it stopped.
            batch_rows: rows per call to the model and per output file (default 10 000).
            features: the columns fed to the model (default: the model's signature inputs).
            keep: input columns copied beside the predictions (default: every column).
            prediction_column: the predictions' column (default `prediction`).
            max_retries: runs again after a failure, from the last finished batch.
            wait: wait until the job ends (else return the queued job at once).
            timeout: seconds to wait at most (None: no limit).
            progress: called with (rows done, rows in all) while waiting.

        Returns:
            The job; when it succeeded, `status.dataset_version` is the new NAME:VERSION.

        Raises:
            stratus.errors.InvalidInput: a reference or setting is wrong (nothing runs).
            stratus.errors.Conflict: the model version loads code and is not trusted.
            TimeoutError: the job did not end within `timeout`.
        """
        spec: dict[str, Any] = {"model": model, "output_dataset": output_dataset}
        for key, value in (
            ("batch_rows", batch_rows),
            ("features", features),
            ("keep", keep),
            ("prediction_column", prediction_column),
        ):
            if value is not None:
                spec[key] = value
        job = self._c.jobs.run(
            batch_predict=spec,
            dataset=dataset,
            instance_type=instance_type,
            spot=spot,
            name=name,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            labels=labels,
            project=project,
        )
        if not wait:
            return job
        return self.wait(job.metadata.name, project, timeout=timeout, progress=progress)

    def wait(
        self,
        name: str,
        project: str | None = None,
        *,
        timeout: float | None = None,
        progress: RowProgress | None = None,
        interval: float = 0.5,
    ) -> js.JobRead:
        """Poll a job until it ends, calling `progress` with its rows done and in all."""
        return self._c.jobs.wait(
            name, project, timeout=timeout, progress=progress, interval=interval
        )
