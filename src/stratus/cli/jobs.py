"""`stratus jobs`: run training jobs (user code, a built-in trainer, or an evaluation of model
versions) on the compute backend, follow their logs, and see, cancel or delete them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import (
    Format,
    OutputOption,
    console,
    err,
    errors,
    human_size,
    show,
    waiting,
)
from stratus.client import Client
from stratus.client._base import read_yaml
from stratus.core.errors import InvalidInput
from stratus.jobs.schemas import JobPhase, JobRead

app = typer.Typer(
    help="Training jobs: run code, a built-in trainer or an evaluation; logs, queue, cancel.",
    no_args_is_help=True,
)

FILE_KEYS = {
    "name",
    "labels",
    "instance_type",
    "spot",
    "code",
    "entrypoint",
    "args",
    "requirements",
    "trainer",
    "evaluation",
    "batch_predict",
    "dataset",
    "experiment",
    "model",
    "env",
    "secrets",
    "timeout_seconds",
    "grace_seconds",
    "max_retries",
}


def _duration(job: JobRead) -> str:
    start = job.status.started_at
    if start is None:
        return "-"
    end = job.status.finished_at or datetime.now(UTC)
    seconds = max(0.0, (end - start).total_seconds())
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _program(job: JobRead) -> str:
    if job.spec.trainer is not None:
        return job.spec.trainer.estimator.rsplit(".", 1)[-1]
    if job.spec.evaluation is not None:
        return "evaluate " + " ".join(job.spec.evaluation.models)
    if job.spec.batch_predict is not None:
        return "batch-predict " + job.spec.batch_predict.model
    assert job.spec.code is not None
    return job.spec.code.entrypoint


JOB_COLUMNS = [
    ("NAME", lambda j: j.metadata.name),
    ("PHASE", lambda j: j.status.phase.value),
    ("PROGRAM", _program),
    ("TYPE", lambda j: j.spec.instance_type + (" spot" if j.spec.spot else "")),
    ("ATTEMPTS", lambda j: j.status.attempts),
    ("PREEMPTED", lambda j: j.status.preemptions),
    ("DURATION", _duration),
    ("COST", lambda j: f"${j.status.cost:.4f}"),
    ("MODEL", lambda j: j.status.model_version or "-"),
    ("CREATED", lambda j: j.metadata.created_at),
]


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def _key_values(values: list[str] | None, what: str) -> dict[str, Any]:
    """`["C=1.0", "penalty=l2"]` → `{"C": 1.0, "penalty": "l2"}` (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} must look like key=value")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def load_job_file(path: Path) -> dict[str, Any]:
    """A job spec file (YAML): the keys of `stratus jobs run`'s flags; `code` is a folder
    relative to the file."""
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: expected a mapping of job settings")
    unknown = sorted(set(document) - FILE_KEYS)
    if unknown:
        raise InvalidInput(
            f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(FILE_KEYS))}"
        )
    if document.get("code") is not None:
        document["code"] = str((path.parent / str(document["code"])).resolve())
    return document


@app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="a job spec file (YAML)", show_default=False)
    ] = None,
    code: Annotated[
        Path | None, typer.Option("--code", help="the folder to run", show_default=False)
    ] = None,
    entrypoint: Annotated[
        str | None,
        typer.Option("--entrypoint", "-e", help="the script in the folder", show_default=False),
    ] = None,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="an argument (repeatable)", show_default=False)
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option("--requirement", help="a pip requirement (repeatable)", show_default=False),
    ] = None,
    trainer: Annotated[
        str | None,
        typer.Option(
            "--trainer",
            help="built-in trainer: an estimator's import path, e.g. "
            "sklearn.linear_model.LogisticRegression",
            show_default=False,
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="trainer param KEY=VALUE (repeatable)", show_default=False),
    ] = None,
    evaluate: Annotated[
        list[str] | None,
        typer.Option(
            "--evaluate",
            help="evaluate a model version on the dataset: NAME:VERSION, NAME@alias or NAME "
            "(repeatable, up to 5)",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label", help="the label column (default: tagged label)", show_default=False
        ),
    ] = None,
    test_size: Annotated[
        float | None, typer.Option("--test-size", help="held-out share (0.2)", show_default=False)
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="NAME or NAME:VERSION to train on", show_default=False
        ),
    ] = None,
    instance_type: Annotated[
        str | None,
        typer.Option("--instance-type", "-t", help="default cpu.small", show_default=False),
    ] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="preemptible and cheaper")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", show_default=False)] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="tracking experiment", show_default=False)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="register the trained model as", show_default=False),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="KEY=VALUE (repeatable)", show_default=False)
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="a project secret as an environment variable: NAME or VARIABLE=NAME "
            "(repeatable; stratus secrets set)",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option("--timeout", help="seconds before it is stopped", show_default=False),
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="retries after a failure", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--detach", help="stream the logs until it ends")
    ] = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Run a training job: user code (a folder and an entrypoint), a built-in trainer, or an
    evaluation of registered model versions on a dataset.

    Flags override the spec file's settings. With --follow, the logs stream until the job
    ends, and the exit status is 0 only if it succeeded.

    Examples:
      stratus jobs run --code ./train --entrypoint train.py --dataset churn --model churn
      stratus jobs run --trainer sklearn.linear_model.LogisticRegression --param C=0.5 \\
          --dataset churn:2 --model churn --spot -f
      stratus jobs run --evaluate churn@production --evaluate churn:4 --dataset churn-holdout -f
      stratus jobs run --file job.yaml --follow
    """
    settings: dict[str, Any] = load_job_file(file) if file is not None else {}
    flags: dict[str, Any] = {
        "code": str(code) if code is not None else None,
        "entrypoint": entrypoint,
        "args": arg or None,
        "requirements": requirement or None,
        "dataset": dataset,
        "instance_type": instance_type,
        "spot": spot,
        "name": name,
        "experiment": experiment,
        "model": model,
        "env": _key_values(env, "--env") or None,
        "secrets": list(secret) if secret else None,
        "timeout_seconds": timeout,
        "max_retries": retries,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    evaluating = bool(evaluate) or settings.get("evaluation") is not None
    if evaluating and (trainer is not None or param or test_size is not None):
        raise typer.BadParameter("--evaluate scores registered models: it takes no trainer flags")
    if evaluating:
        spec = dict(settings.get("evaluation") or {})
        if evaluate:
            spec["models"] = list(evaluate)
        if label is not None:
            spec["label"] = label
        settings["evaluation"] = spec
    elif trainer is not None or param or label is not None or test_size is not None:
        spec = dict(settings.get("trainer") or {})
        if trainer is not None:
            spec["estimator"] = trainer
        spec["params"] = {**spec.get("params", {}), **_key_values(param, "--param")}
        if label is not None:
            spec["label"] = label
        if test_size is not None:
            spec["test_size"] = test_size
        settings["trainer"] = spec
    programs = [
        k for k in ("code", "trainer", "evaluation", "batch_predict") if settings.get(k) is not None
    ]
    if not programs:
        raise typer.BadParameter(
            "give --code (with --entrypoint), --trainer, --evaluate, or --file"
        )
    if len(programs) > 1:
        given = " and ".join(f"`{k}`" for k in programs)
        raise typer.BadParameter(f"give one of --code, --trainer or --evaluate, not {given}")
    sdk = client(ctx)
    where = project_of(ctx, project)
    with waiting("submitting the job…"):
        job = sdk.jobs.run(project=where, **settings)
    if output != Format.table:
        show(job, output)
    else:
        console.print(
            f"job {job.metadata.name}: {job.status.phase.value} "
            f"({job.spec.instance_type}{', spot' if job.spec.spot else ''})",
            markup=False,
        )
    if follow:
        _follow(sdk, job.metadata.name, where)


def _follow(sdk: Client, name: str, project: str) -> None:
    for chunk in sdk.jobs.logs(name, project, follow=True):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    job = sdk.jobs.wait(name, project)
    succeeded = job.status.phase == JobPhase.succeeded
    first = (job.status.message or job.status.phase.value).splitlines()[0]
    (err if succeeded else errors).print(  # a failure is an error, which -q does not silence
        f"[{'green' if succeeded else 'red'}]job {escape(name)} {job.status.phase.value}[/]: "
        f"{escape(first)}"
    )
    if job.status.model_version:
        err.print(f"model: {escape(job.status.model_version)}", highlight=False)
    for reference, metrics in job.status.evaluations.items():
        err.print(f"{escape(reference)}: {escape(_metrics(metrics))}", highlight=False)
    if not succeeded:
        raise typer.Exit(1)


@app.command("list")
def list_(
    ctx: typer.Context,
    phase: Annotated[
        str | None, typer.Option("--phase", help="only jobs in this phase", show_default=False)
    ] = None,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List training jobs.

    Example: stratus jobs list --phase running
    """
    found = client(ctx).jobs.list(
        in_scope(ctx, project, all_projects), phase=phase, all_projects=all_projects
    )
    show(found, output, with_project(JOB_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a job: its phase and message, limits and how they are enforced, attempts and
    preemptions, checkpoint, run, metrics and model.

    Example: stratus jobs show churn-train
    """
    job = client(ctx).jobs.get(name, project_of(ctx, project))
    if output != Format.table:
        show(job, output)
        return
    show(job, output, JOB_COLUMNS)
    status = job.status
    limits = status.limits
    lines = [
        f"limits: {limits.vcpus:g} vCPU, {human_size(limits.memory_bytes)}"
        + (f", {limits.gpus} GPU" if limits.gpus else "")
        + f" — enforced by {limits.enforced_by or '(not started)'}"
        + (f"    node: {status.node}" if status.node else ""),
        f"dataset: {job.spec.dataset or '-'}    experiment: {job.spec.experiment}"
        f"    run: {status.run_id or '-'}",
    ]
    if status.checkpoint is not None:
        step = "" if status.checkpoint.step is None else f" step {status.checkpoint.step},"
        lines.append(
            f"checkpoint:{step} {human_size(status.checkpoint.size)}, "
            f"saved {status.checkpoint.saved_at:%Y-%m-%d %H:%M:%S}"
        )
    if status.metrics:
        lines.append("metrics: " + _metrics(status.metrics))
    for reference, metrics in status.evaluations.items():
        lines.append(f"evaluated {reference}: {_metrics(metrics)}")
    if status.progress is not None:
        total = "" if status.progress.total is None else f" of {status.progress.total:,}"
        lines.append(f"progress: {status.progress.done:,}{total} {status.progress.unit}")
    if status.dataset_version:
        lines.append(f"output: dataset {status.dataset_version}")
    if status.exit_code is not None:
        lines.append(f"exit code: {status.exit_code}")
    lines.append(f"message: {status.message}")
    console.print()
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until it ends")] = False,
    project: ProjectOption = None,
) -> None:
    """Print a job's output (every attempt; kept after it ends).

    Example: stratus jobs logs churn-train -f
    """
    sdk = client(ctx)
    where = project_of(ctx, project)
    if follow:
        _follow(sdk, name, where)
        return
    for chunk in sdk.jobs.logs(name, where):
        sys.stdout.write(chunk.decode(errors="replace"))
    sys.stdout.flush()


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Cancel a job: a waiting one at once; a running one gets SIGTERM and its grace period.

    Example: stratus jobs cancel churn-train
    """
    show(client(ctx).jobs.cancel(name, project_of(ctx, project)), output, JOB_COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, name: str, project: ProjectOption = None) -> None:
    """Delete a job that is not running, with its logs and checkpoint.

    Example: stratus jobs delete churn-train
    """
    client(ctx).jobs.delete(name, project_of(ctx, project))
    console.print(f"deleted job {name}", markup=False)


@app.command("instance-types")
def instance_types(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The instance types jobs run on, with their price per hour on demand and on spot.

    Example: stratus jobs instance-types
    """
    columns = [
        ("NAME", lambda t: t.name),
        ("VCPU", lambda t: f"{t.vcpus:g}"),
        ("MEMORY", lambda t: f"{t.memory_gib:g} GiB"),
        ("GPU", lambda t: t.gpus),
        ("ON-DEMAND/H", lambda t: f"${t.price_per_hour:.4f}"),
        ("SPOT/H", lambda t: f"${t.spot_price_per_hour:.4f}"),
        ("DESCRIPTION", lambda t: t.description),
    ]
    show(client(ctx).jobs.instance_types(), output, columns)
