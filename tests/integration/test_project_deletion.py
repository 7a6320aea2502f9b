"""A project is deleted only once it is empty: each service refuses while it holds something."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, NotFound


def test_project_with_buckets_or_models_is_not_deleted(admin: Client, tiny_model: Path) -> None:
    project = f"del-{uuid.uuid4().hex[:8]}"
    admin.projects.create(project)
    admin.buckets.create("data", project=project)
    admin.models.push(tiny_model, "churn", project=project, flavor="sklearn")

    with pytest.raises(Conflict, match="still has buckets \\(data\\)"):
        admin.projects.delete(project)
    admin.buckets.delete("data", project=project)
    with pytest.raises(Conflict, match="still has models \\(churn\\)"):
        admin.projects.delete(project)
    admin.models.delete("churn", project=project, force=True)

    admin.projects.delete(project)
    with pytest.raises(NotFound):
        admin.projects.get(project)
