"""The SDK's pipelines API: apply a spec (from a dict or a `pipeline.yaml`, uploading the code
folders its steps name), start runs, follow them, resume or cancel them."""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

from stratus.client._archives import code_files, pack
from stratus.client._base import API, labels_of, read_yaml, seg
from stratus.core.errors import InvalidInput
from stratus.iam.schemas import ALL_PROJECTS
from stratus.pipelines import schemas as ps

CODE_KEYS = ("entrypoint", "args", "requirements")


def load_spec(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A spec document and the folder its relative paths start from."""
    if isinstance(source, dict):
        return dict(source), Path.cwd()
    path = Path(source)
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: expected a mapping (name, triggers, steps)")
    return document, path.parent


class Pipelines(API):
    """Pipelines: `apply`, `list`, `get`, `delete`, `run`, `runs`, `get_run`, `wait`,
    `resume`, `cancel`, `rotate_webhook`, `trigger_webhook`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/pipelines"

    def apply(
        self, spec: str | Path | dict[str, Any], project: str | None = None
    ) -> ps.PipelineRead:
        """Create or replace a pipeline from a spec: a dict, or the path of a YAML file.

        A step's `code: ./folder` (with `entrypoint`, `args`, `requirements`) is archived and
        uploaded first (unchanged code is not sent twice); a validate step's `rules:
        rules.yaml` is read. Paths are relative to the spec file.

        Returns:
            The pipeline; `webhook_secret` is set (once) when its webhook was just enabled.
        """
        document, root = load_spec(spec)
        name = document.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("the pipeline spec needs a `name`")
        steps = document.get("steps")
        if not isinstance(steps, list):
            raise InvalidInput("the pipeline spec needs a list of `steps`")
        base = self._base(project)
        prepared = [self._prepare(step, root, f"{base}/{seg(name)}") for step in steps]
        response = self._c._send("PUT", base, json={**document, "steps": prepared})
        return ps.PipelineRead.model_validate(response.json())

    def _prepare(self, step: Any, root: Path, pipeline_url: str) -> Any:
        if not isinstance(step, dict):
            return step
        step = dict(step)
        rules = step.get("rules")
        if isinstance(rules, str):
            step["rules"] = read_yaml(root / rules) or {}
        code = step.get("code")
        if isinstance(code, str):
            folder = root / code
            files = code_files(folder)
            entry = step.pop("entrypoint", None)
            if entry is None:
                raise InvalidInput(f"step {step.get('name')!r}: give the `entrypoint` to run")
            if entry not in {rel for rel, _ in files}:
                raise InvalidInput(
                    f"step {step.get('name')!r}: {entry!r} is not a file of {folder}"
                )
            archive, sha, size, content = pack(folder, files)
            with archive:
                self._c._send(
                    "PUT",
                    f"{pipeline_url}/code/{sha}",
                    content=archive.read(),
                    headers={"content-type": "application/octet-stream"},
                )
            step["code"] = {
                "sha256": sha,
                "size": size,
                "content_hash": content,
                "entrypoint": entry,
                "args": step.pop("args", []),
                "requirements": step.pop("requirements", []),
            }
        return step

    def list(
        self,
        project: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        all_projects: bool = False,
    ) -> builtins.list[ps.PipelineRead]:
        params = {"selector": labels_of(labels)} if labels else {}
        return list(
            self._c._pages(
                ps.PipelineRead, self._base(ALL_PROJECTS if all_projects else project), params
            )
        )

    def get(self, name: str, project: str | None = None) -> ps.PipelineRead:
        return self._c._model(ps.PipelineRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")

    def run(
        self,
        name: str,
        project: str | None = None,
        *,
        datasets: dict[str, int] | None = None,
        reason: str = "",
    ) -> ps.RunRead:
        """Start a run; datasets not pinned in `datasets` use their newest version."""
        body = {"datasets": datasets or {}, "reason": reason}
        return self._c._model(
            ps.RunRead, "POST", f"{self._base(project)}/{seg(name)}/runs", json=body
        )

    def runs(self, name: str, project: str | None = None) -> builtins.list[ps.RunRead]:
        """Runs, newest first."""
        return list(self._c._pages(ps.RunRead, f"{self._base(project)}/{seg(name)}/runs", {}))

    def get_run(
        self, name: str, number: int | None = None, project: str | None = None
    ) -> ps.RunRead:
        """A run by number (default: the newest)."""
        if number is None:
            runs = self._c._json(
                "GET", f"{self._base(project)}/{seg(name)}/runs", params={"limit": 1}
            )
            if not runs["items"]:
                raise InvalidInput(f"pipeline {name!r} has no runs yet")
            return ps.RunRead.model_validate(runs["items"][0])
        return self._c._model(ps.RunRead, "GET", f"{self._base(project)}/{seg(name)}/runs/{number}")

    def wait(
        self, name: str, number: int, project: str | None = None, *, timeout: float | None = None
    ) -> ps.RunRead:
        """Poll until the run has finished (succeeded, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(name, number, project)
            if run.state.finished:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {name}#{number} is still {run.state.value}")
            time.sleep(1.0)

    def resume(self, name: str, number: int, project: str | None = None) -> ps.RunRead:
        """Run a failed run again from the step that failed."""
        return self._c._model(
            ps.RunRead, "POST", f"{self._base(project)}/{seg(name)}/runs/{number}/resume"
        )

    def cancel(self, name: str, number: int, project: str | None = None) -> ps.RunRead:
        return self._c._model(
            ps.RunRead, "POST", f"{self._base(project)}/{seg(name)}/runs/{number}/cancel"
        )

    def rotate_webhook(self, name: str, project: str | None = None) -> ps.PipelineRead:
        """A new webhook secret (in `webhook_secret`, shown once)."""
        return self._c._model(
            ps.PipelineRead, "POST", f"{self._base(project)}/{seg(name)}/webhook-secret"
        )

    def trigger_webhook(
        self, name: str, secret: str, project: str | None = None, **call: Any
    ) -> ps.RunRead:
        """Call the pipeline's webhook as a CI system would (with its secret, no API key)."""
        import httpx

        url = (
            f"{self._c.url}/api/v1/webhooks/projects/{self._project(project)}/pipelines/{seg(name)}"
        )
        response = httpx.post(url, json=call, headers={"x-stratus-webhook-secret": secret})
        if response.status_code >= 400:
            from stratus.client._base import error_of

            raise error_of(response)
        return ps.RunRead.model_validate(response.json())
