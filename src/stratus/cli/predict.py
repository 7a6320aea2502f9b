"""`stratus predict`: call an endpoint with a JSON body, or with the rows of a CSV, Parquet or
JSON-lines file sent in batches (progress bar on a terminal), the predictions printed or
written next to their rows (`data_files.py`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.data_files import (
    columns_of,
    kind_of,
    open_rows,
    with_predictions,
    write_rows,
)
from stratus.cli.output import Format, OutputOption, QuietOption, count_progress, err, show
from stratus.client import Client
from stratus.core.errors import InvalidInput, StratusError


class ProtocolChoice(StrEnum):
    plain = "plain"
    mlflow = "mlflow"
    v2 = "v2"


def predict(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="the endpoint's name")],
    json_body: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="the request body, or @FILE to read it from a file; sent as it is",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="rows to predict: a .csv, .parquet or .jsonl file"),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output-file",
            help="with --file: write the rows and their predictions here (.csv, .parquet, .jsonl)",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="with --file: rows per request")] = 1000,
    protocol: Annotated[
        ProtocolChoice,
        typer.Option(case_sensitive=False, help="plain, mlflow or v2 (Open Inference Protocol)"),
    ] = ProtocolChoice.plain,
    proba: Annotated[
        bool,
        typer.Option(
            "--proba",
            help="a classifier's class probabilities instead of its labels "
            "(a probability.CLASS column per class)",
        ),
    ] = False,
    quiet: QuietOption = False,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Get predictions from an endpoint, for a JSON body or for every row of a file.

    -o table: a prediction per row; json, yaml: the response (--file: rows and predictions).

    Example: stratus predict cancer-api --file data.csv --output-file scored.parquet -p fraud
    """
    if (json_body is None) == (file is None):
        raise typer.BadParameter("give either --json or --file")
    if output_file is not None and file is None:
        raise typer.BadParameter("--output-file goes with --file", param_hint="--output-file")
    c = client(ctx)
    project = project_of(ctx, project)
    if json_body is not None:
        body = _body_text(json_body)
        _predict_body(c, endpoint, project, protocol.value, body, output, proba=proba)
        return
    assert file is not None
    for path, hint in ((file, "--file"), (output_file, "--output-file")):
        if path is not None:
            try:
                kind_of(path)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=hint) from None
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="--file")
    rows, added = _predict_file(
        c, endpoint, project, protocol.value, file, batch_size, quiet, proba=proba
    )
    if output_file is not None:
        write_rows(output_file, rows)
        err.print(
            f"wrote {len(rows)} rows to {output_file}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    elif output == Format.table:
        numbered = [{"row": i, **{k: row.get(k) for k in added}} for i, row in enumerate(rows)]
        show(numbered, output, [(key.upper(), _getter(key)) for key in ["row", *added]])
    else:
        show(rows, output)


def _named(predictions: Any) -> Any:
    """Class probabilities (an object per row keyed by class) as `probability.CLASS` columns:
    the names capture and monitors give them."""
    if not isinstance(predictions, list):
        return predictions
    return [
        {f"probability.{k}": v for k, v in p.items()} if isinstance(p, dict) else p
        for p in predictions
    ]


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


def _body_text(value: str) -> str:
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--json")
        value = path.read_text()
    try:
        json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from None
    return value


def _predict_body(
    c: Client,
    endpoint: str,
    project: str,
    protocol: Any,
    body: str,
    output: Format,
    *,
    proba: bool = False,
) -> None:
    answer = c.endpoints.predict(
        endpoint, project=project, protocol=protocol, body=body, proba=proba
    )
    if output != Format.table:
        show(answer.body, output)
        return
    predictions = _named(answer.predictions) if proba else answer.predictions
    if not isinstance(predictions, list):
        show(answer.body, Format.yaml)
    else:
        rows = [
            {"row": i, **p} if isinstance(p, dict) else {"row": i, "prediction": p}
            for i, p in enumerate(predictions)
        ]
        show(rows, output, [(key.upper(), _getter(key)) for key in columns_of(rows)])
    err.print(
        f"answered by {answer.model_version or '?'} (variant {answer.variant or '?'}), "
        f"request {answer.request_id or '?'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _predict_file(
    c: Client,
    endpoint: str,
    project: str,
    protocol: Any,
    file: Path,
    batch_size: int,
    quiet: bool,
    *,
    proba: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows with their predictions, and the names of the columns the predictions added."""
    source = open_rows(file)
    results: list[dict[str, Any]] = []
    inputs: set[str] = set()
    answered: Counter[str] = Counter()
    with count_progress(f"predict {file.name}", source.total, quiet) as advance:
        for batch in source.batches(batch_size):
            inputs.update(k for row in batch if isinstance(row, dict) for k in row)
            answer = c.endpoints.predict(
                endpoint, batch, project=project, protocol=protocol, proba=proba
            )
            if not isinstance(answer.predictions, list):
                raise StratusError(
                    f"endpoint {endpoint!r} answered without a list of predictions "
                    f"(request {answer.request_id})"
                )
            predictions = _named(answer.predictions) if proba else answer.predictions
            results += with_predictions(batch, predictions)
            answered[f"{answer.model_version} ({answer.variant})"] += len(batch)
            advance(len(batch))
    if not results:
        raise InvalidInput(f"{file.name} holds no rows")
    by = ", ".join(f"{who} ×{n}" for who, n in answered.most_common())
    err.print(f"predicted {len(results)} rows: {by}", markup=False, highlight=False, soft_wrap=True)
    return results, [column for column in columns_of(results) if column not in inputs]
