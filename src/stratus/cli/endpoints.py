"""`stratus endpoints`: roll endpoints out (canary, shadow, promote, rollback), capture their
requests, and look at what runs (status, replicas, history, the controller's scaling events,
logs). `stratus deploy` (`deploy.py`) builds on the helpers here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.listing import AllProjectsOption, cut, in_scope, say_cut, with_project
from stratus.cli.output import Column, Format, OutputOption, console, err, show, waiting
from stratus.client import Client
from stratus.endpoints.schemas import (
    AccessSpec,
    Autoscaling,
    CaptureSpec,
    EndpointRead,
    EndpointSpec,
    VariantSpec,
    VariantStatus,
)

app = typer.Typer(
    help="Serving endpoints: status, replicas, rollouts, history, scaling events, logs.",
    no_args_is_help=True,
)

ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="why (kept in the endpoint's history)")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0, help="seconds to wait for the endpoint to be ready")
]

PassthroughOption = Annotated[
    str | None,
    typer.Option(
        "--passthrough",
        help="columns a request may carry beside the model's inputs, comma-separated (ids, "
        "subjects, timestamps): captured and echoed in the answer, never given to the model "
        "('' for none) [default: unchanged; none for new endpoints]",
        show_default=False,
    ),
]


def model_label(variant: VariantSpec) -> str:
    """`MODEL:VERSION` once the server pinned the version, else the reference as written."""
    if variant.version is None:
        return variant.model
    name = variant.model.partition("@")[0].partition(":")[0]
    return f"{name}:{variant.version}"


def variants_summary(spec: EndpointSpec) -> str:
    """e.g. `main=cancer:2 (90%), canary=cancer:3 (10%), shadow=cancer:4 (shadow)`."""
    return ", ".join(
        f"{v.name}={model_label(v)} ({'shadow' if v.shadow else f'{v.traffic}%'})"
        for v in spec.variants
    )


def wanted_replicas(variant: VariantSpec, seen: VariantStatus | None) -> int:
    """The replicas a variant wants: its spec's count, or, when it autoscales, what the
    controller last decided (its minimum until the controller has looked at it)."""
    if variant.autoscaling is None:
        return variant.replicas
    return variant.autoscaling.min_replicas if seen is None else seen.desired


def ready_count(endpoint: EndpointRead) -> str:
    """Ready replicas of the current spec / replicas it wants (never more than it wants:
    replicas of an earlier revision still serving during a rollout are not counted)."""
    seen = {v.name: v for v in endpoint.status.variants}
    ready = wanted = 0
    for variant in endpoint.spec.variants:
        status = seen.get(variant.name)
        count = wanted_replicas(variant, status)
        wanted += count
        if status is not None and status.version == variant.version:
            ready += min(status.updated, count)
    return f"{ready}/{wanted}"


def autoscaling_text(autoscaling: Autoscaling | None) -> str:
    """e.g. `0-4 replicas, 2 in flight each`; `-` for a fixed number of replicas."""
    if autoscaling is None:
        return "-"
    return (
        f"{autoscaling.min_replicas}-{autoscaling.max_replicas} replicas, "
        f"{autoscaling.target_concurrency:g} in flight each"
    )


def serving_text(endpoint: EndpointRead, *, rolled_out: bool) -> str:
    """e.g. `endpoint churn: revision 5: churn:1 serves 90% (variant main), churn:2 serves
    10% (variant canary)`; before the rollout is done, what it *will* serve."""
    serves, copied = ("serves", "gets") if rolled_out else ("will serve", "will get")
    parts = [
        f"{model_label(v)} {copied} a copy of each request (variant {v.name})"
        if v.shadow
        else f"{model_label(v)} {serves} {v.traffic}% (variant {v.name})"
        for v in endpoint.spec.variants
        if v.shadow or v.traffic > 0
    ]
    state = "" if rolled_out else " is rolling out (not waited for)"
    head = f"endpoint {endpoint.metadata.name}: revision {endpoint.spec.revision}{state}"
    return f"{head}: {', '.join(parts)}"


def url_of(c: Client, endpoint: EndpointRead) -> str:
    url = endpoint.status.url
    if url.startswith(("http://", "https://")):
        return url
    if url:
        return c.url + url
    return f"{c.url}/inference/{endpoint.metadata.project}/{endpoint.metadata.name}"


ENDPOINT_COLUMNS = [
    ("NAME", lambda e: e.metadata.name),
    ("PHASE", lambda e: e.status.phase),
    ("READY", ready_count),
    ("VARIANTS", lambda e: variants_summary(e.spec)),
    ("PUBLIC", lambda e: e.spec.public),
    ("REVISION", lambda e: e.spec.revision),
    ("UPDATED", lambda e: e.metadata.updated_at),
]


def show_endpoint(c: Client, endpoint: EndpointRead, output: Format) -> None:
    show(endpoint, output, ENDPOINT_COLUMNS)
    if output == Format.table:
        console.print(f"url: {url_of(c, endpoint)}", markup=False, highlight=False, soft_wrap=True)


def wait_ready(c: Client, name: str, project: str, timeout: float) -> EndpointRead:
    """Wait with a spinner that shows the rollout's progress; the SDK's error (the phase, and
    what each variant still waits for) when it fails or `timeout` passes."""
    with waiting(f"waiting for endpoint {name} to be ready…") as update:

        def progress(endpoint: EndpointRead, _: str) -> None:
            update(
                f"waiting for endpoint {name} (revision {endpoint.spec.revision}): "
                f"{ready_count(endpoint)} ready, {endpoint.status.phase}…"
            )

        return c.endpoints.wait_ready(name, timeout=timeout, project=project, progress=progress)


def passthrough_columns(value: str | None) -> list[str] | None:
    """`--passthrough customer_id,ts` as a list (None: unchanged; '' clears it)."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def capture_text(capture: CaptureSpec) -> str:
    if not capture.enabled:
        return "off"
    parts = [f"{capture.sample:.0%} of requests", f"kept {capture.retention_days} days"]
    if capture.pii:
        parts.append(f"pii {capture.pii_action}ed: {', '.join(capture.pii)}")
    if capture.subject:
        parts.append(f"subject: {capture.subject}")
    return "; ".join(parts)


@app.command("capture")
def capture_(
    ctx: typer.Context,
    name: str,
    sample: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="share of requests to keep, 0 to 1", show_default=False
        ),
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="stop capturing")] = False,
    pii: Annotated[
        list[str] | None,
        typer.Option(help="an input holding personal data (repeat); replaces the list"),
    ] = None,
    pii_action: Annotated[
        str | None, typer.Option(help="mask (write ***) or drop the pii inputs")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            help="the column that identifies a data subject, for erasure: an input or a "
            "pass-through column ('' for none)"
        ),
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="delete captures older than this")
    ] = None,
    passthrough: PassthroughOption = None,
    reason: ReasonOption = "",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show or change what an endpoint captures for monitoring (a sample of its requests and
    predictions, written as hourly Parquet files; see stratus monitors capture).

    Example: stratus endpoints capture churn-api --sample 1 --subject cid --passthrough cid
    """
    c = client(ctx)
    where = project_of(ctx, project)
    columns = passthrough_columns(passthrough)
    current = c.endpoints.get(name, where).spec.capture
    change: dict[str, Any] = {}
    if off:
        change["sample"] = 0.0
    elif sample is not None:
        change["sample"] = sample
    if pii is not None:
        change["pii"] = pii
    if pii_action is not None:
        if pii_action not in ("mask", "drop"):
            raise typer.BadParameter("--pii-action is mask or drop")
        change["pii_action"] = pii_action
    if subject is not None:
        change["subject"] = subject or None
    if retention_days is not None:
        change["retention_days"] = retention_days
    if change or columns is not None:
        wanted = CaptureSpec.model_validate({**current.model_dump(), **change})
        current = c.endpoints.update(
            name, project=where, capture=wanted, passthrough=columns, reason=reason
        ).spec.capture
    if output != Format.table:
        show(current, output)
        return
    console.print(f"{name}: capture {capture_text(current)}", markup=False)


@app.command("access")
def access_(
    ctx: typer.Context,
    name: str,
    allow_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-cidr",
            help="a source network that may call the endpoint, e.g. 10.0.0.0/8 (repeat); "
            "replaces the list",
            show_default=False,
        ),
    ] = None,
    any_network: Annotated[
        bool, typer.Option("--any-network", help="take the network rules away")
    ] = False,
    rate_limit: Annotated[
        float | None,
        typer.Option(help="requests per second into the endpoint, from all callers", min=0.001),
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="requests at once [one second's worth]", min=1)
    ] = None,
    no_rate_limit: Annotated[
        bool, typer.Option("--no-rate-limit", help="take the rate limit away")
    ] = False,
    reason: ReasonOption = "",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show or change who may reach an endpoint from where: the source networks allowed (like
    a security group) and a rate limit (429 past it). Whether a key is needed: deploy
    --public/--private.

    Example: stratus endpoints access churn-api --allow-cidr 10.0.0.0/8 --rate-limit 100
    """
    if allow_cidr and any_network:
        raise typer.BadParameter("--allow-cidr and --any-network go against each other")
    if rate_limit is not None and no_rate_limit:
        raise typer.BadParameter("--rate-limit and --no-rate-limit go against each other")
    if burst is not None and rate_limit is None:
        raise typer.BadParameter("--burst goes with --rate-limit")
    c = client(ctx)
    where = project_of(ctx, project)
    current = c.endpoints.get(name, where).spec.access
    change: dict[str, Any] = {}
    if allow_cidr:
        change["allowed_cidrs"] = allow_cidr
    elif any_network:
        change["allowed_cidrs"] = []
    if rate_limit is not None:
        change["rate_limit"] = {"requests_per_second": rate_limit, "burst": burst}
    elif no_rate_limit:
        change["rate_limit"] = None
    if change:  # checked by the server, whose errors name the field
        wanted = {**current.model_dump(mode="json"), **change}
        current = c.endpoints.update(name, project=where, access=wanted, reason=reason).spec.access
    if output != Format.table:
        show(current, output)
        return
    console.print(f"{name}: {access_text(current)}", markup=False)


def access_text(access: AccessSpec) -> str:
    networks = ", ".join(access.allowed_cidrs) if access.allowed_cidrs else "any network"
    limit = access.rate_limit
    rate = (
        f"at most {limit.requests_per_second:g} requests/s (burst {limit.limit().burst})"
        if limit is not None
        else "no rate limit"
    )
    return f"callable from {networks}; {rate}"


@app.command("list")
def list_(
    ctx: typer.Context,
    project: ProjectOption = None,
    all_projects: AllProjectsOption = False,
    selector: Annotated[str | None, typer.Option("--selector", "-s")] = None,
    output: OutputOption = Format.table,
) -> None:
    """List a project's endpoints: phase, ready replicas, variants.

    Example: stratus endpoints list -p fraud
    """
    found = client(ctx).endpoints.list(
        in_scope(ctx, project, all_projects), selector, all_projects=all_projects
    )
    show(found, output, with_project(ENDPOINT_COLUMNS, all_projects))


@app.command("show")
def show_(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show an endpoint: its spec, status, variants, replicas and latest events.

    Example: stratus endpoints show cancer-api -p fraud
    """
    c = client(ctx)
    where = project_of(ctx, project)
    endpoint = c.endpoints.get(name, where)
    if output != Format.table:
        show(endpoint, output)
        return
    status = endpoint.status
    summary = Table.grid(padding=(0, 2))
    for key, value in [
        ("endpoint", endpoint.metadata.name),
        ("project", endpoint.metadata.project or "-"),
        ("url", url_of(c, endpoint)),
        ("phase", status.phase),
        ("message", status.message or "-"),
        ("revision", f"{endpoint.spec.revision} (status of {status.observed_revision})"),
        ("public", "yes" if endpoint.spec.public else "no"),
        ("access", access_text(endpoint.spec.access)),
        ("capture", capture_text(endpoint.spec.capture)),
        ("passthrough", ", ".join(endpoint.spec.passthrough) or "-"),
        ("description", endpoint.spec.description or "-"),
    ]:
        summary.add_row(f"[bold]{key}[/]", escape(value))
    console.print(summary)
    observed = {v.name: v for v in status.variants}
    rows = []
    for variant in endpoint.spec.variants:
        seen = observed.get(variant.name)
        rows.append(
            {
                "variant": variant.name,
                "model": model_label(variant),
                "traffic": "shadow" if variant.shadow else f"{variant.traffic}%",
                "ready": f"{seen.ready if seen else 0}/{wanted_replicas(variant, seen)}",
                "autoscaling": autoscaling_text(variant.autoscaling),
                "updated": seen.updated if seen else 0,
                "restarts": seen.restarts if seen else 0,
                "batching": f"{variant.batching.max_batch_size} rows, "
                f"{variant.batching.max_wait_ms:g} ms",
                "message": (seen.message if seen else "") or "-",
            }
        )
    console.print()
    show(rows, Format.table, [(key.upper(), _getter(key)) for key in rows[0]] if rows else [])
    if status.replicas:
        console.print()
        columns: list[tuple[str, Callable[[Any], Any]]] = [
            ("REPLICA", lambda r: r.id),
            ("VARIANT", lambda r: r.variant),
            ("VERSION", lambda r: r.model_version),
            ("PHASE", lambda r: r.phase),
            ("NODE", lambda r: r.node or "-"),
        ]
        if any(r.pid is not None for r in status.replicas):  # the local backend's processes
            columns.append(("PID", lambda r: r.pid if r.pid is not None else "-"))
        columns += [
            ("IN FLIGHT", lambda r: r.in_flight),
            ("STARTED", lambda r: r.started_at),
            ("DETAIL", lambda r: r.detail or "-"),
        ]
        show(status.replicas, Format.table, columns)
    recent = c.endpoints.events(name, where, limit=SHOWN_EVENTS)
    if recent:
        console.print()
        console.print(
            f"[bold]latest events[/] (all of them: stratus endpoints events {escape(name)})",
            highlight=False,
        )
        show(recent, Format.table, EVENT_COLUMNS)


SHOWN_EVENTS = 5  # the newest events `endpoints show` prints
EVENT_COLUMNS: list[Column] = [
    ("TIME", lambda e: e.time),
    ("VARIANT", lambda e: e.variant),
    ("FROM", lambda e: e.from_replicas),
    ("TO", lambda e: e.to_replicas),
    ("REASON", lambda e: e.reason or "-"),
]


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row[key]


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: str,
    replica: Annotated[str | None, typer.Option("--replica", help="one replica's id")] = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=1, max=10_000, help="lines per replica")
    ] = 100,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Print the last lines of each replica's log (-o table prints them as text).

    Example: stratus endpoints logs cancer-api --lines 50 -p fraud
    """
    found = client(ctx).endpoints.logs(name, replica, lines, project=project_of(ctx, project))
    if output != Format.table:
        show(found, output)
        return
    if not found:
        err.print(f"endpoint {name} has no replica logs", markup=False)
    for i, entry in enumerate(found):
        if len(found) > 1:
            typer.echo(("\n" if i else "") + f"==> replica {entry.replica} <==")
        for line in entry.lines:
            typer.echo(line)


@app.command("traffic")
def traffic(
    ctx: typer.Context,
    name: str,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show each variant's requests, server errors (5xx), client errors (4xx) and latency
    quantiles since the control plane started, to judge a canary against the main variant.

    Example: stratus endpoints traffic cancer-api -p fraud
    """
    found = client(ctx).endpoints.traffic(name, project_of(ctx, project))
    if output != Format.table:
        show(found, output)
        return
    if not found:
        err.print(f"endpoint {name} has answered no request yet", markup=False)
        return
    rows = [{"variant": variant, **figures} for variant, figures in found.items()]
    show(
        rows,
        Format.table,
        [
            ("VARIANT", _getter("variant")),
            ("REQUESTS", _getter("requests")),
            ("ERRORS", _errors("errors")),
            ("CLIENT ERRORS", _errors("client_errors")),
            ("P50", _latency("p50_ms")),
            ("P95", _latency("p95_ms")),
            ("P99", _latency("p99_ms")),
        ],
    )


def _errors(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(row: dict[str, Any]) -> str:
        n, total = row[key], row["requests"]
        return f"{n} ({n / total:.1%})" if total else str(n)

    return cell


def _latency(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: "-" if row[key] is None else f"{row[key]:.3g} ms"


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete an endpoint: its replicas drain and stop, and its URL answers 404.

    Example: stratus endpoints delete cancer-api -y -p fraud
    """
    if not yes:
        typer.confirm(f"Delete endpoint {name!r}?", abort=True)
    client(ctx).endpoints.delete(name, project_of(ctx, project))
    console.print(f"deleted endpoint {name}", markup=False)


RolloutWaitOption = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="wait until the new revision is rolled out: its replicas ready and routable, "
        "the old ones stopped",
    ),
]


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: str,
    reason: ReasonOption = "",
    wait: RolloutWaitOption = True,
    timeout: TimeoutOption = 300.0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Make the canary's version the main one, serving all the traffic (a rolling update),
    and wait until it does.

    Example: stratus endpoints promote cancer-api -r "canary error rate is flat" -p fraud
    """
    c = client(ctx)
    project = project_of(ctx, project)
    endpoint = c.endpoints.promote(name, project=project, reason=reason)
    if wait:
        endpoint = wait_ready(c, name, project, timeout)
    show_endpoint(c, endpoint, output)
    if output == Format.table:
        console.print(serving_text(endpoint, rolled_out=wait), markup=False, soft_wrap=True)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision", min=1, help="go back to this revision (see `endpoints history`)"
        ),
    ] = None,
    reason: ReasonOption = "",
    wait: RolloutWaitOption = True,
    timeout: TimeoutOption = 300.0,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Roll back, and wait until it is rolled out. Without --to-revision: drop the canary if
    there is one; else go back to the revision before the current one (after a promote,
    that is the canary's: the canary comes back). --to-revision N serves revision N's
    variants again. It prints which revision serves what, with which traffic.

    Example: stratus endpoints rollback cancer-api --to-revision 3 -p fraud
    """
    c = client(ctx)
    project = project_of(ctx, project)
    before = c.endpoints.get(name, project)
    endpoint = c.endpoints.rollback(
        name,
        to_revision=to_revision,
        project=project,
        reason=reason,
        resource_version=before.metadata.resource_version,  # so `done` says what happened
    )
    done = rollback_text(before, endpoint, to_revision)
    if wait:
        endpoint = wait_ready(c, name, project, timeout)
    show_endpoint(c, endpoint, output)
    if output != Format.table:
        return
    for line in (done, serving_text(endpoint, rolled_out=wait)):
        console.print(line, markup=False, soft_wrap=True)
    canary = next((v for v in endpoint.spec.variants if v.name == "canary"), None)
    if canary is not None and endpoint.spec.revision != before.spec.revision:
        console.print(
            f"the canary {model_label(canary)} serves {canary.traffic}% again: "
            f"`stratus endpoints rollback {name}` drops it; --to-revision N picks another "
            f"revision (stratus endpoints history {name})",
            markup=False,
            soft_wrap=True,
        )


def rollback_text(before: EndpointRead, after: EndpointRead, to_revision: int | None) -> str:
    """What a rollback did, from the endpoint before it and after it."""
    name, now = after.metadata.name, after.spec.revision
    if now == before.spec.revision:
        return f"endpoint {name}: nothing changed (revision {now} already serves that)"
    canary = next((v for v in before.spec.variants if v.name == "canary"), None)
    if to_revision is None and canary is not None:
        return f"endpoint {name}: dropped the canary {model_label(canary)} (now revision {now})"
    target = to_revision or before.spec.revision - 1
    return f"endpoint {name}: rolled back to revision {target} (now revision {now})"


@app.command("remove-variant")
def remove_variant(
    ctx: typer.Context,
    name: str,
    variant: Annotated[str, typer.Argument(help="e.g. shadow or canary")],
    reason: ReasonOption = "",
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Remove one variant; a removed canary gives its traffic back to the main variant.

    Example: stratus endpoints remove-variant cancer-api shadow -p fraud
    """
    c = client(ctx)
    endpoint = c.endpoints.remove_variant(
        name, variant, project=project_of(ctx, project), reason=reason
    )
    show_endpoint(c, endpoint, output)


@app.command("history")
def history(
    ctx: typer.Context,
    name: str,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="newest N only")] = None,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show every revision of an endpoint, newest first: what changed, who, when, why.

    Example: stratus endpoints history cancer-api -p fraud
    """
    revisions, more = cut(
        client(ctx).endpoints.history(
            name, project=project_of(ctx, project), limit=None if limit is None else limit + 1
        ),
        limit,
    )
    show(
        revisions,
        output,
        [
            ("REVISION", lambda r: r.revision),
            ("ACTION", lambda r: r.action),
            ("BY", lambda r: r.actor),
            ("TIME", lambda r: r.time),
            ("REASON", lambda r: r.reason or "-"),
            ("VARIANTS", lambda r: variants_summary(r.spec)),
        ],
    )
    if more:
        say_cut(len(revisions), "revisions", "leave out --limit to see every one")


@app.command("events")
def events(
    ctx: typer.Context,
    name: str,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="the newest N (at most 1000)")
    ] = 100,
    project: ProjectOption = None,
    output: OutputOption = Format.table,
) -> None:
    """Show what the controller did to an endpoint by itself, newest first: each scaling step
    of an autoscaled variant, from how many replicas to how many, and why.

    Example: stratus endpoints events cancer-api --limit 20 -p fraud
    """
    found = client(ctx).endpoints.events(name, project_of(ctx, project), limit=limit)
    if output == Format.table and not found:
        err.print(
            f"endpoint {name} has no events (only an autoscaled variant has them)", markup=False
        )
        return
    show(found, output, EVENT_COLUMNS)
