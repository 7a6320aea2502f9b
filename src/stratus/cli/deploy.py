"""`stratus deploy`: serve a model version behind an endpoint in one command — create it, or roll
its main variant over (a rolling update, a canary or a shadow), with a fixed number of replicas
or autoscaled."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.endpoints import (
    PassthroughOption,
    ReasonOption,
    TimeoutOption,
    passthrough_columns,
    show_endpoint,
    wait_ready,
)
from stratus.cli.output import Format, OutputOption
from stratus.client._endpoints import main_variant
from stratus.core.errors import NotFound
from stratus.endpoints.schemas import MAX_REPLICAS, Autoscaling, CaptureSpec, EndpointSpec


def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the endpoint's name")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="the main variant's model: NAME, NAME:VERSION or NAME@ALIAS"
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_REPLICAS,
            help="a fixed number of replicas of the --model variant, which stops autoscaling "
            "(without --model: of the canary or shadow added) [default: 1, or as now]",
            show_default=False,
        ),
    ] = None,
    min_replicas: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_REPLICAS,
            help="autoscale the --model variant: at least this many replicas (0: none while "
            "idle; default 1, or as now)",
            show_default=False,
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_REPLICAS,
            help="autoscale the --model variant: at most this many replicas (needed to start "
            "autoscaling)",
            show_default=False,
        ),
    ] = None,
    target_concurrency: Annotated[
        float | None,
        typer.Option(
            help="autoscale the --model variant: requests in flight per replica "
            "(default 4, or as now)",
            show_default=False,
        ),
    ] = None,
    scale_to_zero_after: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="autoscale the --model variant: seconds without a request before its last "
            "replica stops, with --min-replicas 0 (default 300, or as now)",
            show_default=False,
        ),
    ] = None,
    public: Annotated[
        bool | None,
        typer.Option(
            "--public/--private",
            help="callable without a credential [default: unchanged; new endpoints are private]",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(help="also serve this model version to --traffic percent of requests"),
    ] = None,
    traffic: Annotated[
        int | None,
        typer.Option(min=1, max=99, help="the canary's share of requests, in percent [10]"),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(help="also send a copy of every request to this model version"),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="most rows per batched predict call")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(min=0, help="how long a batch may wait for more rows")
    ] = None,
    instance_type: Annotated[
        str | None,
        typer.Option(
            "--instance-type",
            help="the size each replica is billed at (stratus jobs instance-types) "
            "[default: unchanged; cpu.small for new endpoints]",
            show_default=False,
        ),
    ] = None,
    capture: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="share of requests to capture for monitoring, 0 to 1 (more settings: "
            "stratus endpoints capture) [default: unchanged; off for new endpoints]",
            show_default=False,
        ),
    ] = None,
    passthrough: PassthroughOption = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="a project secret the replicas get as an environment variable: NAME or "
            "VARIABLE=NAME (repeat; replaces the list) [default: unchanged]",
            show_default=False,
        ),
    ] = None,
    reason: ReasonOption = "",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait until the endpoint is ready")
    ] = True,
    timeout: TimeoutOption = 300.0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Serve a model version behind an endpoint: create it, or roll it over to the new version
    (a rolling update); --canary alone adds a canary to an existing endpoint.

    Example: stratus deploy cancer-api --model cancer@production --replicas 2 -p fraud

    Example: stratus deploy cancer-api --model cancer:3 --min-replicas 0 --max-replicas 4
    """
    scaling = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_concurrency": target_concurrency,
        "scale_to_zero_after_seconds": scale_to_zero_after,
    }
    scaling = {key: value for key, value in scaling.items() if value is not None}
    if scaling and replicas is not None:
        raise typer.BadParameter(
            f"--replicas (a fixed number of replicas) cannot go with {_flags(scaling)} "
            "(autoscaling): give one or the other"
        )
    if scaling and model is None:
        raise typer.BadParameter(f"{_flags(scaling)}: only the --model variant autoscales")
    if traffic is not None and canary is None:
        raise typer.BadParameter("--traffic is the canary's share: give --canary too")
    columns = passthrough_columns(passthrough)
    if model is None and canary is None and shadow is None and capture is None and columns is None:
        raise typer.BadParameter(
            "give --model, or --canary / --shadow to change an existing endpoint"
        )
    if model is None and (max_batch_size is not None or max_wait_ms is not None):
        raise typer.BadParameter("--max-batch-size and --max-wait-ms apply to --model")
    if model is None and instance_type is not None:
        raise typer.BadParameter("--instance-type applies to --model")
    if model is None and secret is not None:
        raise typer.BadParameter("--secret goes with --model")
    c = client(ctx)
    project = project_of(ctx, project)
    existing = None
    if capture is not None or scaling:
        try:
            existing = c.endpoints.get(name, project).spec
        except NotFound:
            pass
    capture_spec = None
    if capture is not None:
        current = existing.capture if existing is not None else CaptureSpec()
        capture_spec = current.model_copy(update={"sample": capture})
    autoscaling = deployed_autoscaling(existing, scaling) if scaling else None
    added_replicas = replicas if model is None else None
    endpoint = None
    if model is not None:
        endpoint = c.endpoints.deploy(
            name,
            model,
            replicas=replicas,
            autoscaling=autoscaling,
            project=project,
            public=public,
            reason=reason,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            capture=capture_spec,
            passthrough=columns,
            instance_type=instance_type,
            secrets=secret,
        )
    elif public is not None or capture_spec is not None or columns is not None:
        endpoint = c.endpoints.update(
            name,
            project=project,
            public=public,
            capture=capture_spec,
            passthrough=columns,
            reason=reason,
        )
    if canary is not None:
        endpoint = c.endpoints.canary(
            name,
            canary,
            10 if traffic is None else traffic,
            replicas=added_replicas or None,
            project=project,
            reason=reason,
        )
    if shadow is not None:
        endpoint = c.endpoints.shadow(
            name, shadow, replicas=added_replicas or 1, project=project, reason=reason
        )
    assert endpoint is not None
    if wait:
        endpoint = wait_ready(c, name, project, timeout)
    show_endpoint(c, endpoint, output)


_SCALING_FLAGS = {
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "target_concurrency": "--target-concurrency",
    "scale_to_zero_after_seconds": "--scale-to-zero-after",
}


def _flags(scaling: dict[str, Any]) -> str:
    return " and ".join(", ".join(_SCALING_FLAGS[key] for key in scaling).rsplit(", ", 1))


def deployed_autoscaling(existing: EndpointSpec | None, scaling: dict[str, Any]) -> Autoscaling:
    """The --model variant's autoscaling after `deploy`: the flags given over its current
    settings when it already autoscales (so `--max-replicas 8` alone changes only that), else
    over the defaults, where --max-replicas is needed."""
    current = None if existing is None else main_variant(existing).autoscaling
    settings = {**(current.model_dump() if current is not None else {}), **scaling}
    if "max_replicas" not in settings:
        raise typer.BadParameter(
            f"to autoscale the --model variant ({_flags(scaling)}), give --max-replicas too: "
            "the most replicas it may have"
        )
    try:
        return Autoscaling.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_SCALING_FLAGS.get(str(e['loc'][0]), str(e['loc'][0])) + ': ' if e['loc'] else ''}"
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise typer.BadParameter(f"cannot autoscale so: {problems}") from None
