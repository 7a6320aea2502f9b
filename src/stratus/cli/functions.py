"""`stratus functions`: deploy one Python file with a `predict(batch)` as a function (a model
version of the python flavor behind an endpoint at min 0 replicas) in one command, then list,
show, invoke and delete functions. Built on the SDK's `client.functions` (`_functions.py`);
docs/functions.md has the handler contract and a comparison with AWS Lambda."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.endpoints import autoscaling_text, model_label, ready_count, url_of
from stratus.cli.listing import AllProjectsOption, in_scope, with_project
from stratus.cli.output import Column, Format, OutputOption, console, err, show, waiting
from stratus.client import Client
from stratus.client._endpoints import main_variant
from stratus.client._functions import SOURCE_TAG
from stratus.endpoints.schemas import MAX_REPLICAS, EndpointRead

app = typer.Typer(
    help="Functions: a Python file with predict(batch), served at 0 replicas when idle.",
    no_args_is_help=True,
)


def _main_label(endpoint: EndpointRead) -> str:
    return model_label(main_variant(endpoint.spec))


def _idle_text(endpoint: EndpointRead) -> str:
    scaling = main_variant(endpoint.spec).autoscaling
    return "-" if scaling is None else f"{scaling.scale_to_zero_after_seconds:g} s"


FUNCTION_COLUMNS: list[Column] = [
    ("NAME", lambda e: e.metadata.name),
    ("VERSION", _main_label),
    ("PHASE", lambda e: e.status.phase),
    ("READY", ready_count),
    ("SCALING", lambda e: autoscaling_text(main_variant(e.spec).autoscaling)),
    ("TO ZERO AFTER", _idle_text),
    ("UPDATED", lambda e: e.metadata.updated_at),
]


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the function's name (its model's and endpoint's)")],
    file: Annotated[
        Path,
        typer.Option(
            "--file", "-f", help="the Python file defining predict(batch) and optionally load()"
        ),
    ],
    include: Annotated[
        list[Path] | None,
        typer.Option(
            "--include",
            help="a file or folder to ship beside it, read by load(path) (repeatable)",
            show_default=False,
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_REPLICAS,
            help="the most replicas under load (default 4, or as now)",
            show_default=False,
        ),
    ] = None,
    target_concurrency: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="requests in flight per replica (default 4, or as now)",
            show_default=False,
        ),
    ] = None,
    scale_to_zero_after: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="seconds without a request before the last replica stops (default 300, or as now)",
            show_default=False,
        ),
    ] = None,
    public: Annotated[
        bool | None,
        typer.Option(
            "--public/--private",
            help="callable without a credential [default: unchanged; new functions are private]",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="wait until the function serves the new version (at zero replicas, that is "
            "until its endpoint is routed)",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="seconds to wait with --wait")
    ] = 300.0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Deploy a Python file as a function, in one command.

    The file is pushed as a new version of model NAME (unless the latest has the same files)
    and served behind endpoint NAME, at 0 to --max-replicas replicas.

    Example: stratus functions deploy add-one --file handler.py --scale-to-zero-after 60

    Example: stratus functions deploy scorer -f score.py --include weights.npy --wait -p fraud
    """
    c = client(ctx)
    project = project_of(ctx, project)
    with waiting(f"deploying function {name} from {file.name}…"):
        done = c.functions.deploy(
            name,
            file,
            project=project,
            include=include or (),
            max_replicas=max_replicas,
            target_concurrency=target_concurrency,
            scale_to_zero_after_seconds=scale_to_zero_after,
            public=public,
            wait=wait,
            timeout=timeout,
        )
    endpoint = done.endpoint
    if output != Format.table:
        show(
            {"endpoint": endpoint, "version": done.version, "pushed": done.pushed},
            output,
        )
        return
    ref = f"{done.version.model}:{done.version.version}"
    how = (
        f"{ref} pushed from {file.name}"
        if done.pushed
        else f"{ref} again ({file.name} holds the same files as the latest version)"
    )
    state = "" if wait else " (not waited for: --wait)"
    _say(
        f"function {name}: {how}; endpoint revision {endpoint.spec.revision}{state}, "
        f"{autoscaling_text(main_variant(endpoint.spec).autoscaling)}, "
        f"to zero after {_idle_text(endpoint)} idle"
    )
    _say(f"url: {url_of(c, endpoint)}/predict")


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    output: OutputOption = Format.table,
) -> None:
    """List the functions: version served, phase, ready replicas, scaling.

    Example: stratus functions list -p fraud
    """
    found = client(ctx).functions.list(
        in_scope(ctx, project, all_projects), all_projects=all_projects
    )
    show(found, output, with_project(FUNCTION_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show a function: its version and source file, URL, phase, replicas and scaling.

    Example: stratus functions show add-one
    """
    c = client(ctx)
    where = project_of(ctx, project)
    endpoint = c.functions.get(name, where)
    if output != Format.table:
        show(endpoint, output)
        return
    main = main_variant(endpoint.spec)
    source = _source(c, main.model.partition(":")[0], main.version, where)
    summary = Table.grid(padding=(0, 2))
    for key, value in [
        ("function", endpoint.metadata.name),
        ("project", endpoint.metadata.project or "-"),
        ("url", f"{url_of(c, endpoint)}/predict"),
        ("version", model_label(main)),
        ("source", source),
        ("phase", endpoint.status.phase),
        ("message", endpoint.status.message or "-"),
        ("ready", ready_count(endpoint)),
        ("scaling", autoscaling_text(main.autoscaling)),
        ("to zero after", f"{_idle_text(endpoint)} without a request"),
        ("public", "yes" if endpoint.spec.public else "no"),
        ("updated", endpoint.metadata.updated_at.strftime("%Y-%m-%d %H:%M:%S")),
    ]:
        summary.add_row(f"[bold]{key}[/]", escape(value))
    console.print(summary)
    err.print(
        f"replicas, logs and scaling events: stratus endpoints show {name}; "
        f"stratus endpoints logs {name}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _source(c: Client, model: str, version: int | None, project: str) -> str:
    """The file a version was deployed from (its tag), '-' when it has none."""
    if version is None:
        return "-"
    found = c.models.version(f"{model}:{version}", project)
    return found.tags.get(SOURCE_TAG, "-")


@app.command("invoke")
def invoke(
    ctx: typer.Context,
    name: str,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help='JSON: a list of rows, or a whole request body ({"instances": [...]}); '
            "@FILE reads it from a file",
        ),
    ],
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Call a function with rows (a function at zero replicas starts one first).

    Example: stratus functions invoke add-one --data '[{"x": 1}, {"x": 2.5}]'
    """
    payload = _payload(data)
    answer = client(ctx).functions.invoke(name, payload, project=project_of(ctx, project))
    if output != Format.table or not isinstance(answer.predictions, list):
        show(answer.body, Format.yaml if output == Format.table else output)
        return
    rows = [{"row": i, "prediction": p} for i, p in enumerate(answer.predictions)]
    show(rows, output, [("ROW", lambda r: r["row"]), ("PREDICTION", lambda r: r["prediction"])])
    err.print(
        f"answered by {answer.model_version or '?'}, request {answer.request_id or '?'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _payload(value: str) -> Any:
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--data")
        value = path.read_text()
    try:
        payload = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    if not isinstance(payload, list | dict):
        raise typer.BadParameter(
            "give a list of rows or a request body (a JSON object)", param_hint="--data"
        )
    return payload


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete a function: its endpoint (replicas drain and stop) and its model's versions.

    Example: stratus functions delete add-one -y
    """
    if not yes:
        typer.confirm(f"Delete function {name!r} (its endpoint and every version)?", abort=True)
    client(ctx).functions.delete(name, project_of(ctx, project))
    _say(f"deleted function {name}")
