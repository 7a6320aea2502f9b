"""Kinds that store, serve and watch models: buckets, model aliases, endpoints, monitors,
alert channels and rules, and pipelines. Data and model bytes are never in files: they are
named by version (`churn:3`, `churn@production`)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from stratus.core.errors import InvalidInput, NotFound
from stratus.endpoints import schemas as endpoint_schemas
from stratus.endpoints.service import EndpointService
from stratus.iac.kinds import InProject, Live, SpecKind, project_of, stamp, without_defaults
from stratus.iac.schemas import ResourceDocument
from stratus.iam.principals import Principal
from stratus.monitoring import alert_schemas
from stratus.monitoring import schemas as monitor_schemas
from stratus.monitoring.alerts import AlertService
from stratus.monitoring.service import MonitorService
from stratus.pipelines import schemas as pipeline_schemas
from stratus.pipelines.service import PipelineService
from stratus.registry import schemas as registry_schemas
from stratus.registry.service import RegistryService
from stratus.storage import schemas as storage_schemas
from stratus.storage.service import StorageService

# --- buckets ---------------------------------------------------------------------------------


class BucketKind(SpecKind):
    kind = "Bucket"
    api_path = "buckets"
    CREATE = storage_schemas.BucketCreate
    SPEC = ("description",)

    def __init__(self, storage: StorageService) -> None:
        self.storage = storage

    def read(self, project: str, name: str) -> Any:
        return self.storage.get_bucket(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.storage.list_buckets(project, None, None, None)[0]

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.storage.create_bucket(project_of(doc), self.validate(doc, labels))

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        spec = self.normalize(doc)
        self.storage.update_bucket(
            project_of(doc),
            doc.metadata.name,
            storage_schemas.BucketUpdate(labels=labels, resource_version=resource_version, **spec),
        )

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.storage.delete_bucket(project, name)  # refused while it holds objects


# --- alert channels and rules ----------------------------------------------------------------


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and (
        value == alert_schemas.MASK or bool(alert_schemas.SECRET_REFERENCE.match(value))
    )


class AlertChannelKind(SpecKind):
    """Notification channels. Their credentials (header values, the SMTP password, a Slack
    URL or a webhook URL's query) are never in files: a file names a project secret
    (`secret:NAME`), or writes `****` to keep what is stored."""

    kind = "AlertChannel"
    api_path = "notification-channels"
    CREATE = alert_schemas.ChannelApply
    SPEC = tuple(alert_schemas.ChannelSpec.model_fields)

    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        spec = super().normalize(doc)
        where = f"{doc.source or doc.kind}: AlertChannel {doc.metadata.name}"
        for header, value in (spec.get("headers") or {}).items():
            if not _is_reference(value):
                raise InvalidInput(
                    f"{where}: spec.headers.{header}: files never hold credentials: name a "
                    "project secret (secret:NAME) or write '****' to keep the stored value"
                )
        if spec.get("password") is not None and not _is_reference(spec["password"]):
            raise InvalidInput(
                f"{where}: spec.password: files never hold credentials: name a project secret "
                "(secret:NAME) or write '****' to keep the stored one"
            )
        url = spec.get("url")
        if isinstance(url, str) and not _is_reference(url) and alert_schemas.MASK not in url:
            if spec.get("type") == "slack" or "?" in url:
                raise InvalidInput(
                    f"{where}: spec.url: a Slack URL or a URL's query is a credential: name a "
                    "project secret (secret:NAME)"
                )
        return spec

    def read(self, project: str, name: str) -> Any:
        return self.alerts.channels.get(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.alerts.channels.list(project, None, None, None)[0]

    def with_references(self, live: Live, references: dict[str, str]) -> Live:
        """The live spec with the stored `secret:NAME` references where reads show `****`."""
        spec = live.spec
        for key, reference in references.items():
            if key.startswith("headers."):
                spec["headers"] = {**spec.get("headers", {}), key.split(".", 1)[1]: reference}
            else:
                spec[key] = reference
        return live

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        found = super().live(principal, project, name)
        if found is None:
            return None
        assert project is not None
        references = self.alerts.channels.references(project, [name])
        return self.with_references(found, references.get(name, {}))

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        found = super().live_all(principal, project)
        references = self.alerts.channels.references(project)  # one read for all
        return {n: self.with_references(v, references.get(n, {})) for n, v in found.items()}

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.normalize(doc)  # the credential checks
        self.alerts.channels.apply(project_of(doc), self.validate(doc, labels))

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.alerts.channels.delete(project, name)  # refused while rules name it


def _own_match(match: dict[str, str] | None, project: str | None) -> dict[str, str]:
    """A rule's label matchers without `project` when it is the rule's own (implied)."""
    return {k: v for k, v in (match or {}).items() if not (k == "project" and v == project)}


class AlertRuleKind(SpecKind):
    """Alert rules: applied whole (create or replace, as `stratus alerts apply` does); their
    labels go to their notifications too."""

    kind = "AlertRule"
    api_path = "alert-rules"
    CREATE = alert_schemas.AlertRuleApply
    SPEC = tuple(
        f
        for f in alert_schemas.AlertRuleSpec.model_fields
        if f in alert_schemas.AlertRuleApply.model_fields
    )

    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        spec = super().normalize(doc)
        return {**spec, "match": _own_match(spec.get("match"), doc.metadata.project)}

    def read(self, project: str, name: str) -> Any:
        return self.alerts.get_rule(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.alerts.list_rules(project, None, None, None)[0]

    def live_of(self, read: Any) -> Live:
        live = super().live_of(read)
        live.spec["match"] = _own_match(live.spec.get("match"), read.metadata.project)
        return live

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.alerts.apply_rule(project_of(doc), self.validate(doc, labels))

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.alerts.delete_rule(project, name)


# --- model aliases ---------------------------------------------------------------------------


class ModelAliasKind(InProject):
    """An alias pinned to a model version: `metadata.name` is `MODEL@ALIAS`, `spec.version`
    the version. Moving it is recorded in the alias's history, as `stratus models alias`
    does."""

    kind = "ModelAlias"
    labelled = False

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    @staticmethod
    def parts(doc_or_name: ResourceDocument | str) -> tuple[str, str]:
        name = doc_or_name if isinstance(doc_or_name, str) else doc_or_name.metadata.name
        model, at, alias = name.partition("@")
        if not at or not model or not alias:
            raise InvalidInput(f"ModelAlias {name}: metadata.name is MODEL@ALIAS, e.g. churn@prod")
        return model, alias

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        model, alias = self.parts(doc)
        try:
            registry_schemas.check_alias(alias)
        except InvalidInput as exc:
            raise InvalidInput(f"{doc.source or doc.kind}: ModelAlias: {exc.detail}") from None
        version = doc.spec.get("version")
        extra = sorted(set(doc.spec) - {"version"})
        if extra:
            raise InvalidInput(
                f"{doc.source or doc.kind}: ModelAlias {doc.metadata.name}: spec.{extra[0]}: "
                "not a field (a ModelAlias has spec.version only)"
            )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidInput(
                f"{doc.source or doc.kind}: ModelAlias {doc.metadata.name}: spec.version: "
                "a version number (1 or more)"
            )
        return {"version": version}

    def audit_path(self, project: str | None, name: str) -> str:
        model, _, alias = name.partition("@")
        return f"/api/v1/projects/{project}/models/{model}/aliases/{alias}"

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        model, alias = self.parts(name)
        try:
            aliases, _ = self.registry.list_aliases(project, model)
        except NotFound:
            return None
        for found in aliases:
            if found.alias == alias:
                return Live({"version": found.version}, {}, stamp(found.updated_at))
        return None

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        out: dict[str, Live] = {}
        for model in self.registry.list_models(project, None, None, None)[0]:
            for found in self.registry.list_aliases(project, model.metadata.name)[0]:
                live = Live({"version": found.version}, {}, stamp(found.updated_at))
                out[f"{model.metadata.name}@{found.alias}"] = live
        return out

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        model, alias = self.parts(doc)
        spec = self.normalize(doc)
        self.registry.set_alias(
            project_of(doc),
            model,
            alias,
            registry_schemas.AliasSet(version=spec["version"], reason="stratus apply"),
            actor=principal.subject,
        )

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        model, alias = self.parts(name)
        self.registry.delete_alias(
            project, model, alias, actor=principal.subject, reason="stratus destroy"
        )

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        return spec


# --- endpoints -------------------------------------------------------------------------------


def _variant_defaults(variant: dict[str, Any]) -> dict[str, Any]:
    return without_defaults(endpoint_schemas.VariantSpec, variant)


class EndpointKind(SpecKind):
    """Endpoints: variants (a model reference each, pinned to a version by the server; a
    file that gives `version` pins it itself), traffic, autoscaling, capture, access. An
    update sends only the fields that differ, so changing a description never re-resolves
    an alias."""

    kind = "Endpoint"
    api_path = "endpoints"
    CREATE = endpoint_schemas.EndpointCreate
    SPEC = ("description", "public", "variants", "capture", "passthrough", "access", "secrets")

    def __init__(self, endpoints: EndpointService) -> None:
        self.endpoints = endpoints

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        spec = super().normalize(doc)
        for variant in spec["variants"]:
            if variant.get("version") is None:
                variant.pop("version", None)
        return spec

    def align(self, live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        declared = {v.get("name"): v for v in desired.get("variants") or []}
        variants = []
        for variant in live.get("variants") or []:
            mine = declared.get(variant.get("name"))
            if mine is not None and "version" not in mine:
                variant = {k: v for k, v in variant.items() if k != "version"}
            variants.append(variant)
        return {**live, "variants": variants}

    def read(self, project: str, name: str) -> Any:
        return self.endpoints.get(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.endpoints.list_endpoints(project, None, None, None)[0]

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.endpoints.create(project_of(doc), self.validate(doc, labels), actor=principal.subject)

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        project, name = project_of(doc), doc.metadata.name
        desired = self.normalize(doc)
        held = self.live_of(self.read(project, name))
        now = self.align(held.spec, desired)
        changed = {k: v for k, v in desired.items() if now.get(k) != v}
        self.endpoints.update(
            project,
            name,
            endpoint_schemas.EndpointUpdate.model_validate(
                {
                    **changed,
                    "labels": labels,
                    "resource_version": resource_version,
                    "reason": "stratus apply",
                }
            ),
            actor=principal.subject,
        )

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.endpoints.delete(project, name)

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = super().exported(spec)
        out["variants"] = [_variant_defaults(v) for v in spec["variants"]]
        return out


# --- monitors --------------------------------------------------------------------------------


class MonitorKind(SpecKind):
    """Monitors. One that watches another endpoint, or is of another type, is a new monitor:
    a plan replaces it (its results start afresh) rather than updating it."""

    kind = "Monitor"
    api_path = "monitors"
    replaced_on = ("endpoint", "type")
    CREATE = monitor_schemas.MonitorApply
    SPEC = tuple(
        f
        for f in monitor_schemas.MonitorSpec.model_fields
        if f in monitor_schemas.MonitorApply.model_fields
    )

    def __init__(self, monitors: MonitorService) -> None:
        self.monitors = monitors

    def read(self, project: str, name: str) -> Any:
        return self.monitors.get(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.monitors.list_monitors(project)[0]

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.monitors.apply(project_of(doc), self.validate(doc, labels))

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.monitors.delete(project, name)


# --- pipelines -------------------------------------------------------------------------------


#: each step kind's schema, by its `type`
_STEP_MODELS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(pipeline_schemas.Step)[0])
}


class PipelineKind(SpecKind):
    """Pipelines: applied whole; their runs act as whoever applied them last. A step's code
    is an archive the client uploads first (`code: ./folder` in a file), named by its
    SHA-256, so an unchanged folder plans to no change."""

    kind = "Pipeline"
    api_path = "pipelines"
    CREATE = pipeline_schemas.PipelineApply
    SPEC = ("description", "triggers", "steps")

    def __init__(self, pipelines: PipelineService) -> None:
        self.pipelines = pipelines

    def read(self, project: str, name: str) -> Any:
        return self.pipelines.get(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.pipelines.list_pipelines(project, None, None, None)[0]

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.pipelines.apply(project_of(doc), self.validate(doc, labels), principal)

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.pipelines.delete(project, name)

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = super().exported(spec)
        steps = []
        for step in spec["steps"]:
            model = _STEP_MODELS.get(step.get("type"))
            steps.append(step if model is None else without_defaults(model, step))
        out["steps"] = steps
        return out
