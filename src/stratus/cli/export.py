"""`stratus export`: a project as infrastructure-as-code files (`export iac`), and what other
tools need — a project's alert rules as a Prometheus rule file,
a Grafana dashboard of the platform's metrics, an endpoint as Kubernetes manifests, and a model
version as a Docker build context that serves it without the platform."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from stratus.cli.context import ProjectOption, client, project_of
from stratus.cli.iac import export_iac
from stratus.cli.output import err
from stratus.monitoring.exports import grafana_dashboard, prometheus_rules

app = typer.Typer(
    help="Export: a project as IaC files, Prometheus alert rules, a Grafana dashboard, "
    "Kubernetes manifests of an endpoint, a Dockerfile that serves a model version.",
    no_args_is_help=True,
)

OutFile = Annotated[
    Path | None,
    typer.Option("--output-file", "-o", help="write here (default: standard output)"),
]


def _write(text: str, target: Path | None) -> None:
    if target is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target.write_text(text, encoding="utf-8")
    err.print(f"wrote {target}", markup=False, highlight=False, soft_wrap=True)


@app.command("prometheus-rules")
def prometheus_rules_(
    ctx: typer.Context, project: ProjectOption = None, output_file: OutFile = None
) -> None:
    """Write the project's enabled alert rules as a Prometheus rule file (check it with
    `promtool check rules FILE`).

    Example: stratus export prometheus-rules -p churn -o stratus-rules.yml
    """
    where = project_of(ctx, project)
    rules = client(ctx).alerts.list(where)
    document = prometheus_rules(where, rules)
    _write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000), output_file)


@app.command("grafana")
def grafana(
    output_file: OutFile = None,
    title: Annotated[str, typer.Option(help="the dashboard's title")] = "Stratus",
) -> None:
    """Write a Grafana dashboard (JSON) of the platform's metrics: traffic, errors, latency,
    replicas, batching, drift, model performance and jobs.

    Example: stratus export grafana -o stratus-dashboard.json
    """
    _write(json.dumps(grafana_dashboard(title=title), indent=2) + "\n", output_file)


@app.command("kubernetes")
def kubernetes(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="the endpoint")],
    project: ProjectOption = None,
    image: Annotated[
        str,
        typer.Option(
            help="each variant's image: {model}, {version}, {variant} and {endpoint} are "
            "replaced (the default is the tag `stratus export dockerfile` suggests)"
        ),
    ] = "{model}:{version}",
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="the namespace (default: kubectl's current one)"),
    ] = None,
    cpu_target: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="autoscale on this CPU utilisation (percent of the request) instead of the "
            "requests in flight, for a cluster without a custom-metrics adapter",
        ),
    ] = None,
    output_file: OutFile = None,
) -> None:
    """Write Kubernetes manifests (multi-document YAML) of an endpoint: for each variant that
    takes traffic, a Deployment of the image `stratus export dockerfile` builds for its model
    version, and a HorizontalPodAutoscaler when it autoscales; one Service over them all.

    Example: stratus export kubernetes churn-api -p risk -n ml -o churn-api.yaml
    """
    from stratus.iac.kubernetes import ManifestOptions, caveats, manifests, to_yaml

    c = client(ctx)
    where = project_of(ctx, project)
    read = c.endpoints.get(endpoint, where)
    catalog = {t.name: t for t in c.jobs.instance_types()}
    objects = manifests(
        read,
        ManifestOptions(
            image=image, namespace=namespace, instance_types=catalog, cpu_target=cpu_target
        ),
    )
    _write(to_yaml(objects), output_file)
    for note in caveats(read, catalog):
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


@app.command("dockerfile")
def dockerfile(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION (or NAME@ALIAS)")],
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir", "-o", help="the build context's folder (made if missing; empty)"
        ),
    ],
    project: ProjectOption = None,
    python: Annotated[
        str, typer.Option("--python", help="the Python of the base image (python:X.Y-slim)")
    ] = f"{sys.version_info.major}.{sys.version_info.minor}",
    wheel: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="install Stratus from this wheel (built from a checkout) instead of the "
            "package index's release",
        ),
    ] = None,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            help="another requirement for the image (repeat), e.g. scikit-learn==1.5.2",
        ),
    ] = None,
) -> None:
    """Write a Docker build context that serves a model version on port 8080 without the
    platform: the version's files in model/, a Dockerfile that installs this Stratus with the
    flavor's libraries and starts the replica runtime, and a .dockerignore.

    Example: stratus export dockerfile churn:3 -p risk -o churn-3
    """
    from stratus._version import __version__
    from stratus.iac.dockerfile import build_context

    if wheel is not None and not (wheel.name.startswith("stratus-") and wheel.suffix == ".whl"):
        raise typer.BadParameter(f"{wheel.name} is not a Stratus wheel (stratus-*.whl)")
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise typer.BadParameter(f"{output_dir} is not an empty folder", param_hint="--output-dir")
    c = client(ctx)
    where = project_of(ctx, project)
    version = c.models.version(ref, where)
    context = build_context(
        version,
        stratus_version=__version__,
        python_version=python,
        wheel=wheel.name if wheel is not None else None,
        packages=with_ or [],
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    pinned = f"{version.model}:{version.version}"
    c.models.pull(pinned, output_dir / "model", where)
    if wheel is not None:
        (output_dir / "wheels").mkdir()
        shutil.copyfile(wheel, output_dir / "wheels" / wheel.name)
    for name, text in context.files().items():
        (output_dir / name).write_text(text, encoding="utf-8")
    err.print(
        f"wrote {output_dir} ({pinned}); build it with: docker build -t {pinned} {output_dir}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


app.command("iac")(export_iac)
