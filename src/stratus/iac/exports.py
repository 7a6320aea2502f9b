"""Live state as files, and the files' JSON Schema.

`export_project` reads a project as documents that plan to no change: the way to adopt an
existing project into Git. Defaults are left out, the managed-by label too (an apply adds
it), secrets appear as references only. `json_schema` describes every kind's document, for
editors to complete and check files with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from stratus.billing.schemas import BudgetApply
from stratus.core.errors import NotFound, StratusError
from stratus.endpoints.schemas import EndpointCreate
from stratus.iac.kinds import ORDER
from stratus.iac.planning import Planner
from stratus.iac.project_kinds import ProjectDeclared, SecretDeclared
from stratus.iac.schemas import MANAGED_BY, DocumentMetadata, ResourceDocument
from stratus.iam.authorization import check_project
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission
from stratus.iam.schemas import ServiceAccountCreate
from stratus.monitoring.alert_schemas import AlertRuleApply, ChannelApply
from stratus.monitoring.schemas import MonitorApply
from stratus.pipelines.schemas import PipelineApply
from stratus.storage.schemas import BucketCreate


def export_project(planner: Planner, principal: Principal, project: str) -> list[ResourceDocument]:
    """Every resource of `project` the caller may read, as documents in apply order."""
    check_project(principal, project, Permission.PROJECT_READ)
    handlers = planner.handlers
    docs: list[ResourceDocument] = []
    live = handlers["Project"].live(principal, None, project)
    if live is None:
        raise NotFound(f"project {project!r} not found")
    docs.append(
        _document("Project", None, project, live.labels, handlers["Project"].exported(live.spec))
    )
    for kind in ORDER:
        handler = handlers.get(kind)
        if handler is None or not handler.scoped:
            continue
        try:
            handler.may_read(principal, project, "")
        except StratusError:
            continue  # a kind the caller may not read is left out
        for name, found in sorted(handler.live_all(principal, project).items()):
            labels = found.labels if handler.labelled else {}
            docs.append(_document(kind, project, name, labels, handler.exported(found.spec)))
    return docs


def _document(
    kind: str, project: str | None, name: str, labels: dict[str, str], spec: dict[str, Any]
) -> ResourceDocument:
    kept = {k: v for k, v in labels.items() if k != MANAGED_BY}
    return ResourceDocument(
        kind=kind, metadata=DocumentMetadata(name=name, project=project, labels=kept), spec=spec
    )


# --- the JSON Schema of files ----------------------------------------------------------------


class ModelAliasDeclared(BaseModel):
    """An alias pinned to a version: metadata.name is MODEL@ALIAS."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the model version the alias points at")


#: each kind's spec, as the schema of its create (what the document's metadata gives left out)
SPECS: dict[str, type[BaseModel]] = {
    "Project": ProjectDeclared,
    "ServiceAccount": ServiceAccountCreate,
    "Secret": SecretDeclared,
    "Bucket": BucketCreate,
    "AlertChannel": ChannelApply,
    "ModelAlias": ModelAliasDeclared,
    "Endpoint": EndpointCreate,
    "Monitor": MonitorApply,
    "AlertRule": AlertRuleApply,
    "Pipeline": PipelineApply,
    "Budget": BudgetApply,
}
_FROM_METADATA = ("name", "labels", "reason", "resource_version")


def json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) of one resource document, any kind."""
    _, top = models_json_schema(
        [(model, "validation") for model in SPECS.values()], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    metadata = DocumentMetadata.model_json_schema(ref_template="#/$defs/{model}")
    defs.pop("ResourceDocument", None)
    variants = []
    for kind in ORDER:
        model = SPECS[kind]
        spec = dict(defs.pop(model.__name__))
        spec["properties"] = {
            k: v for k, v in spec.get("properties", {}).items() if k not in _FROM_METADATA
        }
        spec["required"] = [r for r in spec.get("required", []) if r not in _FROM_METADATA]
        if not spec["required"]:
            del spec["required"]
        defs[f"{kind}Spec"] = spec
        variants.append(
            {
                "type": "object",
                "title": kind,
                "additionalProperties": False,
                "required": ["kind", "metadata"],
                "properties": {
                    "kind": {"const": kind},
                    "metadata": {"$ref": "#/$defs/Metadata"},
                    "spec": {"$ref": f"#/$defs/{kind}Spec"},
                },
            }
        )
    defs["Metadata"] = metadata
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://stratus.dev/schemas/iac.json",
        "title": "A Stratus resource document",
        "oneOf": variants,
        "$defs": defs,
    }
