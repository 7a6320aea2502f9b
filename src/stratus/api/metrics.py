"""`/metrics`: the platform's Prometheus metrics.

Who scrapes what: a platform admin, or a user with the platform role `metrics-reader`, reads
every series; a principal with `metrics.read` in some projects (the project role
`metrics-reader`, given to a Prometheus service account, or an owner) reads only the series
labelled with those projects. Either way the credential reads `/metrics` and, for a
metrics-reader, nothing else, so Prometheus never holds an admin key.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from stratus.core.errors import PermissionDenied
from stratus.iam.authorization import Caller
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission

router = APIRouter(tags=["metrics"])


class ProjectSeries(Collector):
    """The series of `source` labelled with one of `projects` (others, and series of no
    project, left out)."""

    def __init__(self, source: Collector, projects: frozenset[str]) -> None:
        self.source = source
        self.projects = projects

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            kept = [s for s in family.samples if s.labels.get("project") in self.projects]
            if kept:
                copy = Metric(family.name, family.documentation, family.type, family.unit)
                copy.samples = kept
                yield copy


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, principal: Caller) -> Response:
    """Prometheus text format: inference requests, errors, latency, in-flight requests, batch
    sizes and replicas, labelled by project, endpoint, variant and model version (for a
    project's metrics reader: that project's series only)."""
    platform = request.app.state.platform
    registry = platform.metrics.registry
    source: Collector = registry
    if not principal.reads_all_metrics:
        projects = frozenset(
            project
            for project in _projects_of(principal)
            if principal.can(Permission.METRICS_READ, project)
        )
        if not projects:
            raise PermissionDenied(
                "reading /metrics needs the metrics-reader role (in a project, or over the "
                "platform) or a platform admin's key"
            )
        source = ProjectSeries(registry, projects)
    await platform.controller.refresh_figures()
    return Response(generate_latest(source), media_type=CONTENT_TYPE_LATEST)


def _projects_of(principal: Principal) -> list[str]:
    if principal.key_project is not None:
        return [principal.key_project]
    return list(principal.roles)
