"""`stratus batch-predict`: score every row of a dataset version with a model version, as a job,
into a new version of another dataset."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.output import (
    Format,
    OutputOption,
    console,
    count_progress,
    err,
    errors,
    show,
    waiting,
)
from stratus.client import Client
from stratus.jobs.schemas import JobPhase, JobRead


def batch_predict(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="NAME:VERSION, NAME@ALIAS or NAME (the latest version)")
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="the input: NAME or NAME:VERSION")
    ],
    output_dataset: Annotated[
        str, typer.Option("--output-dataset", help="the dataset the predictions go to")
    ],
    instance_type: Annotated[
        str, typer.Option("--instance-type", "-t", help="the job's instance type")
    ] = "cpu.small",
    spot: Annotated[
        bool, typer.Option("--spot/--on-demand", help="preemptible and cheaper; resumes")
    ] = False,
    batch_rows: Annotated[
        int | None,
        typer.Option(
            "--batch-rows", help="rows per call to the model [10000]", show_default=False, min=1
        ),
    ] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            help="a column fed to the model (repeatable; default: the model's signature)",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            help="an input column copied beside the predictions (repeatable; default: all)",
            show_default=False,
        ),
    ] = None,
    prediction_column: Annotated[
        str | None,
        typer.Option(
            "--prediction-column", help="the predictions' column [prediction]", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="the job's name")] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="runs again after a failure, where it stopped", min=0)
    ] = 0,
    wait: Annotated[
        bool, typer.Option("--wait/--detach", help="show progress until it ends")
    ] = True,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Predict a model for every row of a dataset version, into a new dataset version.

    Runs as a job on the compute backend: it streams the input in record batches (memory is
    bounded by a batch), resumes after the last finished batch when preempted or retried,
    and commits the predictions, beside the input's columns, as a new version of the output
    dataset with the same row count and its lineage (`stratus data show`). With --wait (the
    default) a progress bar follows it, and the exit status is 0 only if it succeeded.

    Examples:
      stratus batch-predict churn@production --dataset customers --output-dataset churn-scores
      stratus batch-predict churn:3 -d customers:7 --output-dataset scores --spot --detach
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    spec: dict[str, object] = {"model": model, "output_dataset": output_dataset}
    for key, value in (
        ("batch_rows", batch_rows),
        ("features", feature or None),
        ("keep", keep or None),
        ("prediction_column", prediction_column),
    ):
        if value is not None:
            spec[key] = value
    with waiting("submitting the job…"):
        job = sdk.jobs.run(
            batch_predict=spec,
            dataset=dataset,
            instance_type=instance_type,
            spot=spot,
            name=name,
            max_retries=retries,
            project=where,
        )
    job_name = job.metadata.name
    if not wait:
        if output != Format.table:
            show(job, output)
        else:
            console.print(
                f"job {job_name}: {job.status.phase.value} — follow it with "
                f"`stratus jobs show {job_name}`",
                markup=False,
            )
        return
    pinned = job.spec.batch_predict.model if job.spec.batch_predict else model
    err.print(
        f"job {escape(job_name)}: predicting {escape(pinned)} on "
        f"{escape(job.spec.dataset or dataset)}",
        highlight=False,
    )
    job = _follow(sdk, job, where)
    succeeded = job.status.phase == JobPhase.succeeded
    if output != Format.table:
        show(job, output)  # the job alone on stdout, for scripts
    elif succeeded:
        console.print(
            f"predictions: dataset {job.status.dataset_version}", markup=False, highlight=False
        )
    if succeeded:
        return
    first = (job.status.message or job.status.phase.value).splitlines()[0]
    errors.print(
        f"[red]job {escape(job_name)} {job.status.phase.value}[/]: {escape(first)} "
        f"(see `stratus jobs logs {escape(job_name)}`)",
        highlight=False,
    )
    raise typer.Exit(1)


def _follow(sdk: Client, job: JobRead, project: str) -> JobRead:
    """Wait for the job with a bar of its rows (none when quiet or not on a terminal)."""
    assert job.spec.dataset is not None
    total = sdk.datasets.version(job.spec.dataset, project).rows
    shown = 0
    with count_progress("rows", total, quiet=False) as advance:

        def moved(done: int, _total: int | None) -> None:
            nonlocal shown
            if done > shown:
                advance(done - shown)
                shown = done

        return sdk.batch.wait(job.metadata.name, project, progress=moved)
