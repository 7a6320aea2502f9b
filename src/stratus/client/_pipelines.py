"""The SDK's pipelines API: apply a spec (from a dict or a `pipeline.yaml`, uploading the code
folders its steps name), start runs, follow them, resume or cancel them."""

from __future__ import annotations

import builtins
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratus.client._archives import code_files, pack
from stratus.client._base import API, labels_of, read_yaml, seg
from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.pipelines import schemas as ps

CODE_KEYS = ("entrypoint", "args", "requirements")
UNBOUNDED_SCAN = 100  # runs `wait_for_run` looks through for the newest match of a trigger


def load_spec(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A spec document and the folder its relative paths start from."""
    if isinstance(source, dict):
        return dict(source), Path.cwd()
    path = Path(source)
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: expected a mapping (name, triggers, steps)")
    return document, path.parent


def prepare_step(step: Any, root: Path, where: str = "") -> tuple[Any, Path | None]:
    """A step as the API takes it: `rules: FILE` read, `code: ./folder` (with `entrypoint`,
    `args`, `requirements`) as a code spec naming the folder's archive; and the folder to
    upload that archive from (None when the step names none). Paths are relative to `root`."""
    if not isinstance(step, dict):
        return step, None
    step = dict(step)
    rules = step.get("rules")
    if isinstance(rules, str):
        step["rules"] = read_yaml(root / rules) or {}
    code = step.get("code")
    if not isinstance(code, str):
        return step, None
    folder = root / code
    files = code_files(folder)
    prefix = f"{where}: " if where else ""
    entry = step.pop("entrypoint", None)
    if entry is None:
        raise InvalidInput(f"{prefix}step {step.get('name')!r}: give the `entrypoint` to run")
    if entry not in {rel for rel, _ in files}:
        raise InvalidInput(
            f"{prefix}step {step.get('name')!r}: {entry!r} is not a file of {folder}"
        )
    archive, sha, size, content = pack(folder, files)
    archive.close()
    step["code"] = {
        "sha256": sha,
        "size": size,
        "content_hash": content,
        "entrypoint": entry,
        "args": step.pop("args", []),
        "requirements": step.pop("requirements", []),
    }
    return step, folder


class Pipelines(API):
    """Pipelines: `apply`, `list`, `get`, `delete`, `run`, `runs`, `get_run`, `wait`,
    `wait_for_run`, `resume`, `cancel`, `rotate_webhook`, `trigger_webhook`."""

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
        step, folder = prepare_step(step, root)
        if folder is not None:  # upload the archive its code names
            archive, sha, _, _ = pack(folder)
            with archive:
                self._c._send(
                    "PUT",
                    f"{pipeline_url}/code/{sha}",
                    content=archive.read(),
                    headers={"content-type": "application/octet-stream"},
                )
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
        self,
        name: str,
        number: int,
        project: str | None = None,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
    ) -> ps.RunRead:
        """Poll until the run has finished (succeeded, failed or cancelled).

        Raises:
            TimeoutError: it had not finished after `timeout` seconds (the message names the
                step it is at).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(name, number, project)
            if run.state.finished:
                return run
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(
                    f"run #{number} of pipeline {name!r} is still {run.state.value} after "
                    f"{timeout:g}s{at_step(run)}"
                )
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - now)))

    def wait_for_run(
        self,
        name: str,
        project: str | None = None,
        *,
        number: int | None = None,
        next_run: bool = False,
        since: datetime | None = None,
        trigger: ps.TriggerKind | str | None = None,
        timeout: float | None = None,
        interval: float = 1.0,
    ) -> ps.RunRead:
        """Wait until a run exists that matches, and return it, whatever its state (then
        `wait` for its end). What a script needs after pushing data that a pipeline watches:
        note the time, push, then `wait_for_run(name, since=that_time, trigger="dataset")`.

        Args:
            name: the pipeline.
            project: the project (default: the client's).
            number: that run (it may not have started yet).
            next_run: the first run to start after this call.
            since: the first run created at or after this time (naive: local time). Compared
                with the control plane's clock.
            trigger: only runs started by this trigger (`manual`, `schedule`, `dataset`,
                `webhook`, `alert`).
            timeout: seconds to wait (None: no limit).
            interval: seconds between polls.

        Returns:
            With `number`, that run; with `next_run` or `since`, the oldest run that matches;
            with neither, the newest run that matches (or the first to start).

        Raises:
            stratus.errors.NotFound: no such pipeline.
            stratus.errors.InvalidInput: `number` with `next_run` or `since`, or an unknown
                trigger.
            TimeoutError: no such run within `timeout` seconds.
        """
        if number is not None and (next_run or since is not None or trigger is not None):
            raise InvalidInput("give a run number, or what the run is like (next_run, since, …)")
        try:
            kind = None if trigger is None else ps.TriggerKind(trigger)
        except ValueError:
            kinds = ", ".join(k.value for k in ps.TriggerKind)
            raise InvalidInput(f"trigger {trigger!r} is not one of {kinds}") from None
        after = None
        if next_run:
            newest = self._newest_runs(name, project, 1)
            after = newest[0].number if newest else 0
        start = None if since is None else since.astimezone(UTC)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found, newest_number = self._matching_run(name, project, number, after, start, kind)
            if found is not None:
                return found
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                what = describe_wanted(number, after, start, kind)
                seen = f"the newest is #{newest_number}" if newest_number else "it has no runs"
                raise TimeoutError(f"pipeline {name!r}: {what} within {timeout:g}s ({seen})")
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - now)))

    def _newest_runs(self, name: str, project: str | None, limit: int) -> builtins.list[ps.RunRead]:
        path = f"{self._base(project)}/{seg(name)}/runs"
        page = self._c._json("GET", path, params={"limit": limit})
        return [ps.RunRead.model_validate(item) for item in page["items"]]

    def _matching_run(
        self,
        name: str,
        project: str | None,
        number: int | None,
        after: int | None,
        since: datetime | None,
        kind: ps.TriggerKind | None,
    ) -> tuple[ps.RunRead | None, int]:
        """The run wanted, if it exists yet, and the newest run's number (0: none)."""
        path = f"{self._base(project)}/{seg(name)}/runs"
        newest = 0
        match = None
        runs = self._c._pages(ps.RunRead, path, {"limit": 20})  # newest first
        for seen, run in enumerate(runs):
            newest = newest or run.number
            if number is None and after is None and since is None and seen >= UNBOUNDED_SCAN:
                break  # nothing bounds the search: the newest runs only
            if number is not None:
                if run.number <= number:
                    return (run if run.number == number else None), newest
                continue
            if (after is not None and run.number <= after) or (
                since is not None and run.created_at < since
            ):
                break
            if kind is None or run.trigger == kind:
                match = run  # going back in time: the last one kept is the oldest
                if after is None and since is None:
                    break  # the newest that matches
        return match, newest

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
        response = httpx.post(
            url, json=call, headers={"x-stratus-webhook-secret": secret}, verify=self._c._tls
        )
        if response.status_code >= 400:
            from stratus.client._base import error_of

            raise error_of(response)
        return ps.RunRead.model_validate(response.json())


def at_step(run: ps.RunRead) -> str:
    """`` (step train: running)`` for the first step that has not succeeded, or nothing."""
    step = next((st for st in run.steps if st.state != ps.StepState.succeeded), None)
    return "" if step is None else f" (step {step.name}: {step.state.value})"


def describe_wanted(
    number: int | None, after: int | None, since: datetime | None, kind: ps.TriggerKind | None
) -> str:
    """What `wait_for_run` waited for, in words: `run #4 did not start`, `no run started by
    the dataset trigger after run #3 since 2026-05-01 09:00:00 UTC`."""
    if number is not None:
        return f"run #{number} did not start"
    parts = ["no run started"]
    if kind is not None:
        parts.append(f"by the {kind.value} trigger")
    if after:
        parts.append(f"after run #{after}")
    if since is not None:
        parts.append(f"since {since:%Y-%m-%d %H:%M:%S} UTC")
    return " ".join(parts)
