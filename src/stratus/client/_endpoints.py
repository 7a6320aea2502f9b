"""The SDK's endpoints API: deploy model versions behind an endpoint, roll them out (canary,
shadow, promote, rollback), wait until they serve, and call them through the gateway.

An endpoint is a set of variants, each one model version served by a fixed number of
replicas or by as many as its autoscaling wants (`stratus.endpoints.schemas`). Every change
writes a revision; `history` lists them, and `events` what the controller did by itself.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from stratus.client._base import API, labels_of, seg
from stratus.client._inference import (
    Prediction,
    Protocol,
    asking_probabilities,
    dump_json,
    path_of,
    predictions_of,
    request_body,
)
from stratus.core.errors import InvalidInput, NotFound, ServiceUnavailable, StratusError
from stratus.core.resource_schemas import ALL_PROJECTS, MAX_LIMIT
from stratus.endpoints import schemas as ep

Variant = ep.VariantSpec | Mapping[str, Any]
Capture = ep.CaptureSpec | Mapping[str, Any]
Access = ep.AccessSpec | Mapping[str, Any]
Autoscale = ep.Autoscaling | Mapping[str, Any]


class Endpoints(API):
    """Serving endpoints: deploy, roll out, wait until ready, predict."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/endpoints"

    def _path(self, name: str, project: str | None) -> str:
        return f"{self._base(project)}/{seg(name)}"

    def _inference(self, name: str, project: str | None) -> str:
        return f"/inference/{self._project(project)}/{seg(name)}"

    # --- the resource ----------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        model: str,
        *,
        replicas: int | None = None,
        autoscaling: Autoscale | None = None,
        project: str | None = None,
        public: bool | None = None,
        reason: str = "",
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
        capture: Capture | None = None,
        passthrough: Sequence[str] | None = None,
        instance_type: str | None = None,
        access: Access | None = None,
        secrets: Sequence[str] | None = None,
        wait: bool = False,
        timeout: float = 120.0,
    ) -> ep.EndpointRead:
        """Serve `model` behind the endpoint `name`: create it with one `main` variant, or roll
        its main variant over to `model` (the other variants keep their settings).

        Args:
            name: the endpoint's name.
            model: `NAME` (latest), `NAME:VERSION` or `NAME@ALIAS`; the server pins it to a
                version number.
            replicas: a fixed number of replicas of the main variant (an autoscaled one
                stops autoscaling); None keeps the current number, or the autoscaling (1
                replica for a new endpoint).
            autoscaling: make the main variant follow the requests in flight instead (an
                `Autoscaling` or a dict of its fields, e.g. `{"max_replicas": 4,
                "min_replicas": 0, "target_concurrency": 2}`), replacing its autoscaling
                settings if it had some; None keeps them. Not with `replicas`.
            project: the project (default: the client's).
            public: callable without a credential; None keeps the current setting (a new
                endpoint is private).
            reason: why (kept in the endpoint's history).
            max_batch_size: the most rows the adaptive batcher puts in one predict call;
                None keeps the current setting (or the server's default).
            max_wait_ms: how long the batcher may wait for more rows; None keeps it.
            capture: data capture settings (a `CaptureSpec` or a dict of its fields, e.g.
                `{"sample": 1.0, "pii": ["email"]}`); None keeps the current ones (off for a
                new endpoint).
            passthrough: columns a request may carry beside the model's inputs (ids,
                subjects, timestamps): captured and echoed in the answer, never given to the
                model; None keeps the current ones (none for a new endpoint).
            instance_type: the size each replica of the main variant is billed at (see
                `jobs.instance_types()`); None keeps it (`cpu.small` for a new endpoint).
            access: network rules and rate limit (an `AccessSpec` or a dict, e.g.
                `{"allowed_cidrs": ["10.0.0.0/8"], "rate_limit": {"requests_per_second": 50}}`);
                None keeps them (any network, no limit for a new endpoint).
            secrets: project secrets the replicas get as environment variables (`NAME` or
                `VARIABLE=NAME`), for a model's own code; None keeps them.
            wait: return only once the endpoint serves the new version (see `wait_ready`).
            timeout: seconds to wait when `wait` is true.

        Returns:
            The endpoint, as written (or, with `wait`, once ready).

        Raises:
            stratus.errors.InvalidInput: both `replicas` and `autoscaling` were given.
            stratus.errors.NotFound: no such project, or no such model version.
            stratus.errors.StaleResource: someone else changed the endpoint meanwhile.
            stratus.errors.ServiceUnavailable: `wait` timed out, or the rollout failed.
        """
        if replicas is not None and autoscaling is not None:
            raise InvalidInput(
                "give replicas (a fixed number) or autoscaling (a range that follows the "
                "requests), not both"
            )
        scaling = None if autoscaling is None else _autoscaling_body(autoscaling)
        batching = {
            k: v
            for k, v in {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms}.items()
            if v is not None
        }
        try:
            current = self.get(name, project)
        except NotFound:
            variant: dict[str, Any] = {
                "name": "main",
                "model": model,
                "replicas": 1 if replicas is None else replicas,
            }
            if scaling is not None:
                variant["autoscaling"] = scaling
            if batching:
                variant["batching"] = batching
            if instance_type is not None:
                variant["instance_type"] = instance_type
            endpoint = self.create(
                name,
                [variant],
                project=project,
                public=bool(public),
                capture=capture,
                passthrough=passthrough,
                access=access,
                secrets=secrets,
                reason=reason,
            )
        else:
            variants = rolled_variants(
                current.spec,
                model,
                replicas=replicas,
                batching=batching,
                autoscaling=scaling,
                instance_type=instance_type,
            )
            endpoint = self.update(
                name,
                project=project,
                variants=variants,
                public=public,
                capture=capture,
                passthrough=passthrough,
                access=access,
                secrets=secrets,
                reason=reason,
                resource_version=current.metadata.resource_version,
            )
        if wait:
            return self.wait_ready(name, timeout=timeout, project=project)
        return endpoint

    def create(
        self,
        name: str,
        variants: Sequence[Variant],
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
        public: bool = False,
        capture: Capture | None = None,
        passthrough: Sequence[str] | None = None,
        access: Access | None = None,
        secrets: Sequence[str] | None = None,
        reason: str = "",
    ) -> ep.EndpointRead:
        """Create an endpoint from its variants (their non-shadow traffic adds up to 100).

        Args:
            name: the endpoint's name (a DNS label).
            variants: `VariantSpec`s or dicts of their fields, e.g.
                `[{"name": "main", "model": "churn:3", "replicas": 2}]`.
            project: the project (default: the client's).
            description: free text.
            labels: key=value labels, for `list(selector=...)`.
            public: callable without a credential.
            capture: data capture settings (`CaptureSpec` or dict); default off.
            passthrough: columns a request may carry beside the model's inputs (ids,
                subjects, timestamps): captured and echoed, never given to the model.
            access: source networks allowed and a rate limit (`AccessSpec` or dict); default
                any network, no limit.
            secrets: project secrets the replicas get as environment variables.
            reason: why (kept in the endpoint's history).

        Raises:
            stratus.errors.AlreadyExists: the project has an endpoint of that name.
            stratus.errors.InvalidInput: the variants do not make a valid endpoint.
        """
        body = {
            "name": name,
            "description": description,
            "labels": labels_of(labels),
            "public": public,
            "variants": [_variant_body(v) for v in variants],
            "reason": reason,
        }
        if capture is not None:
            body["capture"] = _capture_body(capture)
        if passthrough is not None:
            body["passthrough"] = list(passthrough)
        if access is not None:
            body["access"] = _access_body(access)
        if secrets is not None:
            body["secrets"] = list(secrets)
        return self._c._model(ep.EndpointRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[ep.EndpointRead]:
        """A project's endpoints (every page), optionally those matching a label selector."""
        return list(
            self._c._pages(
                ep.EndpointRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"selector": selector},
            )
        )

    def get(self, name: str, project: str | None = None) -> ep.EndpointRead:
        """An endpoint: its spec, and its status (phase, variants, replicas).

        Raises:
            stratus.errors.NotFound: no endpoint of that name in the project.
        """
        return self._c._model(ep.EndpointRead, "GET", self._path(name, project))

    def update(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        labels: dict[str, str] | None = None,
        public: bool | None = None,
        variants: Sequence[Variant] | None = None,
        capture: Capture | None = None,
        passthrough: Sequence[str] | None = None,
        access: Access | None = None,
        secrets: Sequence[str] | None = None,
        reason: str = "",
        resource_version: int | None = None,
    ) -> ep.EndpointRead:
        """Change an endpoint; None leaves a field as it is.

        Args:
            name: the endpoint's name.
            project: the project (default: the client's).
            description: free text.
            labels: replace the labels.
            public: callable without a credential.
            variants: replace every variant: a rolling update (replicas of unchanged
                variants keep serving).
            capture: replace the data capture settings (`CaptureSpec` or dict).
            passthrough: replace the pass-through columns (`[]` for none).
            access: replace the network rules and rate limit (`AccessSpec` or dict; `{}`
                for any network and no limit).
            secrets: replace the secrets the replicas get (`[]` for none): a rolling
                restart, so new replicas start with the newest values.
            reason: why (kept in the endpoint's history).
            resource_version: fail with StaleResource unless the endpoint is still at it.
        """
        body: dict[str, Any] = {
            "description": description,
            "labels": labels,
            "public": public,
            "variants": None if variants is None else [_variant_body(v) for v in variants],
            "capture": None if capture is None else _capture_body(capture),
            "passthrough": None if passthrough is None else list(passthrough),
            "access": None if access is None else _access_body(access),
            "secrets": None if secrets is None else list(secrets),
            "resource_version": resource_version,
        }
        body = {k: v for k, v in body.items() if v is not None}
        body["reason"] = reason
        return self._c._model(ep.EndpointRead, "PATCH", self._path(name, project), json=body)

    def delete(self, name: str, project: str | None = None) -> None:
        """Delete an endpoint; its replicas drain and stop."""
        self._c._send("DELETE", self._path(name, project))

    # --- rollouts --------------------------------------------------------------------------------

    def canary(
        self,
        name: str,
        model: str,
        traffic: int = 10,
        *,
        replicas: int | None = None,
        project: str | None = None,
        reason: str = "",
        resource_version: int | None = None,
    ) -> ep.EndpointRead:
        """Add (or replace) the `canary` variant, serving `model` to `traffic` percent of the
        requests, taken from the main variant.

        Args:
            name: the endpoint's name.
            model: `NAME`, `NAME:VERSION` or `NAME@ALIAS`.
            traffic: the canary's share of requests, 1 to 99 percent.
            replicas: the canary's replicas (default: as many as the main variant).
            project: the project (default: the client's).
            reason: why (kept in the endpoint's history).
            resource_version: fail with StaleResource unless the endpoint is still at it.
        """
        body = _without_none(
            {
                "model": model,
                "traffic": traffic,
                "replicas": replicas,
                "reason": reason,
                "resource_version": resource_version,
            }
        )
        path = f"{self._path(name, project)}/canary"
        return self._c._model(ep.EndpointRead, "POST", path, json=body)

    def shadow(
        self,
        name: str,
        model: str,
        *,
        replicas: int = 1,
        project: str | None = None,
        reason: str = "",
        resource_version: int | None = None,
    ) -> ep.EndpointRead:
        """Add (or replace) the `shadow` variant: it gets a copy of every request, and its
        answers are dropped (compare them in its logs and metrics).

        Args:
            name: the endpoint's name.
            model: `NAME`, `NAME:VERSION` or `NAME@ALIAS`.
            replicas: the shadow's replicas.
            project: the project (default: the client's).
            reason: why (kept in the endpoint's history).
            resource_version: fail with StaleResource unless the endpoint is still at it.
        """
        body = _without_none(
            {
                "model": model,
                "replicas": replicas,
                "reason": reason,
                "resource_version": resource_version,
            }
        )
        path = f"{self._path(name, project)}/shadow"
        return self._c._model(ep.EndpointRead, "POST", path, json=body)

    def remove_variant(
        self, name: str, variant: str, *, project: str | None = None, reason: str = ""
    ) -> ep.EndpointRead:
        """Remove one variant (say the shadow); a removed canary gives its traffic back."""
        path = f"{self._path(name, project)}/variants/{seg(variant)}"
        return self._c._model(ep.EndpointRead, "DELETE", path, params={"reason": reason})

    def promote(
        self,
        name: str,
        *,
        project: str | None = None,
        reason: str = "",
        resource_version: int | None = None,
        wait: bool = False,
        timeout: float = 120.0,
    ) -> ep.EndpointRead:
        """Make the canary's version the main one, serving all the traffic (a rolling
        update of the main variant).

        Args:
            name: the endpoint's name.
            project: the project (default: the client's).
            reason: why (kept in the endpoint's history).
            resource_version: fail with StaleResource unless the endpoint is still at it.
            wait: return only once the new revision is rolled out (see `wait_ready`): its
                replicas ready and routable, the old ones gone.
            timeout: seconds to wait when `wait` is true.

        Raises:
            stratus.errors.Conflict: the endpoint has no canary.
            stratus.errors.ServiceUnavailable: `wait` timed out, or the rollout failed.
        """
        body = _without_none({"reason": reason, "resource_version": resource_version})
        path = f"{self._path(name, project)}/promote"
        endpoint = self._c._model(ep.EndpointRead, "POST", path, json=body)
        if wait:
            return self.wait_ready(name, timeout=timeout, project=project)
        return endpoint

    def rollback(
        self,
        name: str,
        *,
        to_revision: int | None = None,
        project: str | None = None,
        reason: str = "",
        resource_version: int | None = None,
        wait: bool = False,
        timeout: float = 120.0,
    ) -> ep.EndpointRead:
        """Roll back. Without `to_revision`: drop the canary if there is one (the main
        variant takes its traffic back), else re-apply the revision before the current one
        (after a `promote`, that is the canary's revision: the canary comes back). With
        `to_revision`: re-apply that revision's variants (see `history`). Either way the
        result is a new revision.

        Args:
            name: the endpoint's name.
            to_revision: the revision whose variants to serve again.
            project: the project (default: the client's).
            reason: why (kept in the endpoint's history).
            resource_version: fail with StaleResource unless the endpoint is still at it.
            wait: return only once the new revision is rolled out (see `wait_ready`).
            timeout: seconds to wait when `wait` is true.

        Raises:
            stratus.errors.InvalidInput: `to_revision` is not an earlier revision.
            stratus.errors.Conflict: there is nothing to roll back to.
            stratus.errors.ServiceUnavailable: `wait` timed out, or the rollout failed.
        """
        body = _without_none(
            {"reason": reason, "to_revision": to_revision, "resource_version": resource_version}
        )
        path = f"{self._path(name, project)}/rollback"
        endpoint = self._c._model(ep.EndpointRead, "POST", path, json=body)
        if wait:
            return self.wait_ready(name, timeout=timeout, project=project)
        return endpoint

    def history(
        self, name: str, *, project: str | None = None, limit: int | None = None
    ) -> builtins.list[ep.RevisionRead]:
        """The endpoint's revisions, newest first: who changed what, when and why.

        Args:
            name: the endpoint's name.
            project: the project (default: the client's).
            limit: at most this many (default: all).
        """
        params = {"limit": min(limit, MAX_LIMIT) if limit else None}
        path = f"{self._path(name, project)}/history"
        revisions: builtins.list[ep.RevisionRead] = []
        for revision in self._c._pages(ep.RevisionRead, path, params):
            revisions.append(revision)
            if limit is not None and len(revisions) >= limit:
                break
        return revisions

    def events(
        self, name: str, project: str | None = None, limit: int = 100
    ) -> builtins.list[ep.EndpointEventRead]:
        """What the controller did to the endpoint by itself (its scaling steps) and why,
        newest first.

        Args:
            name: the endpoint's name.
            project: the project (default: the client's).
            limit: at most this many, 1 to 1000 (the server keeps each endpoint's newest
                1000).

        Raises:
            stratus.errors.NotFound: no endpoint of that name in the project.
            stratus.errors.InvalidInput: `limit` is not 1 to 1000.
        """
        path = f"{self._path(name, project)}/events"
        data = self._c._json("GET", path, params={"limit": limit})
        return [ep.EndpointEventRead.model_validate(item) for item in data or []]

    def logs(
        self,
        name: str,
        replica: str | None = None,
        lines: int = 100,
        *,
        project: str | None = None,
    ) -> builtins.list[ep.LogLines]:
        """The last `lines` lines of each replica's log (or of one `replica`)."""
        params = _without_none({"replica": replica, "lines": lines})
        data = self._c._json("GET", f"{self._path(name, project)}/logs", params=params)
        return [ep.LogLines.model_validate(item) for item in data or []]

    def traffic(self, name: str, project: str | None = None) -> dict[str, dict[str, float | None]]:
        """Each variant's traffic since the control plane started, as the gateway measured it.

        Args:
            name: the endpoint's name.
            project: the project (default: the client's).

        Returns:
            `{variant: {"requests", "errors", "client_errors", "p50_ms", "p95_ms", "p99_ms"}}`:
            `errors` counts server errors (status 500 and above), `client_errors` status 400
            to 499; the latency quantiles are None for a variant without requests.

        Raises:
            stratus.errors.NotFound: no endpoint of that name in the project.
        """
        data = self._c._json("GET", f"{self._path(name, project)}/traffic")
        return {
            variant: ep.VariantTraffic.model_validate(figures).model_dump()
            for variant, figures in (data or {}).items()
        }

    def wait_ready(
        self,
        name: str,
        timeout: float = 120.0,
        project: str | None = None,
        *,
        interval: float = 0.5,
        progress: Callable[[ep.EndpointRead, str], None] | None = None,
    ) -> ep.EndpointRead:
        """Poll until the endpoint serves its current spec: the controller has applied the
        latest revision, phase `ready`, every variant's replicas ready (routable) and on the
        variant's version, and no other replica left (those of earlier revisions stopped).

        Args:
            name: the endpoint's name.
            timeout: seconds to wait.
            project: the project (default: the client's).
            interval: seconds between polls.
            progress: called after each poll that is not yet ready, with the endpoint and
                what it still waits for (e.g. to show it).

        Returns:
            The ready endpoint.

        Raises:
            stratus.errors.ServiceUnavailable: the phase is `failed`, or the endpoint was not
                ready in time; the message names the phase, the server's message and what
                each variant still waits for.
        """
        start = time.monotonic()
        while True:
            endpoint = self.get(name, project)
            waiting_for = not_ready(endpoint)
            if waiting_for is None:
                return endpoint
            now = time.monotonic()
            current = endpoint.status.observed_revision == endpoint.spec.revision
            if current and endpoint.status.phase == "failed":
                raise ServiceUnavailable(f"endpoint {name!r} failed: {waiting_for}")
            if now - start >= timeout:
                raise ServiceUnavailable(
                    f"endpoint {name!r} was not ready after {timeout:g}s: {waiting_for}"
                )
            if progress is not None:
                progress(endpoint, waiting_for)
            time.sleep(max(0.0, min(interval, start + timeout - now)))

    # --- inference -------------------------------------------------------------------------------

    def predict(
        self,
        name: str,
        instances: Any = None,
        *,
        project: str | None = None,
        protocol: Protocol = "plain",
        body: Any = None,
        content_type: str | None = None,
        proba: bool = False,
    ) -> Prediction:
        """Call the endpoint through the gateway.

        Give either `instances` (rows as lists or as {column: value} objects, a pandas
        DataFrame, a pyarrow Table or a numpy array), which the SDK puts in the body
        `protocol` wants, or a ready `body` sent as it is.

        With `proba`, a classifier answers its class probabilities: one object per row keyed
        by class name (`{"0": 0.12, "1": 0.88}`), whatever the protocol.

        Args:
            name: the endpoint's name.
            instances: the rows to predict.
            project: the project (default: the client's).
            protocol: `plain` (POST .../predict, {"instances": [...]}), `mlflow`
                (POST .../invocations, the MLflow scoring protocol) or `v2` (POST
                .../v2/models/NAME/infer, the Open Inference Protocol).
            body: the request body instead of `instances`: bytes or str sent as they are
                (say CSV for `mlflow` with content_type="text/csv"), anything else as JSON.
            content_type: the body's MIME type (default: application/json).
            proba: ask for class probabilities (`method: predict_proba` in the request's
                parameters); a JSON `body` gets the parameter added.

        Returns:
            A `Prediction`: one prediction per row, which version and variant answered, and
            the request id.

        Raises:
            stratus.errors.InvalidInput: the rows do not fit the model's signature (the
                message names the input and the row), or `proba` was asked of a model that
                gives no probabilities (a regressor).
            stratus.errors.NotFound: no such endpoint (or one you may not call).
            stratus.errors.ServiceUnavailable: the endpoint has no ready replica.
        """
        if (instances is None) == (body is None):
            raise InvalidInput("give either instances or body")
        path = self._inference(name, project) + path_of(protocol, seg(name))
        if proba and body is not None:
            body = _asking_probabilities(protocol, body, content_type)
        try:
            if body is None:
                content = dump_json(request_body(protocol, instances, proba=proba))
            elif isinstance(body, bytes):
                content = body
            elif isinstance(body, str):
                content = body.encode()
            else:
                content = dump_json(body)
        except TypeError as exc:  # orjson's JSONEncodeError is a TypeError
            raise InvalidInput(f"the request cannot be sent as JSON: {exc}") from None
        headers = {"content-type": content_type or "application/json"}
        response = self._c._send("POST", path, content=content, headers=headers)
        try:
            parsed = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise StratusError(
                f"endpoint {name!r} answered {response.status_code} without a JSON body: "
                f"{response.text[:200]!r}"
            ) from None
        return Prediction(
            predictions=predictions_of(parsed),
            model_version=response.headers.get("x-stratus-model-version", ""),
            variant=response.headers.get("x-stratus-variant", ""),
            request_id=response.headers.get("x-request-id", ""),
            body=parsed,
        )

    def metadata(self, name: str, project: str | None = None) -> dict[str, Any]:
        """The served model's v2 metadata: its name, versions, inputs and outputs."""
        path = f"{self._inference(name, project)}/v2/models/{seg(name)}"
        data: dict[str, Any] = self._c._json("GET", path)
        return data


# --- pure helpers ----------------------------------------------------------------------------


def _asking_probabilities(protocol: str, body: Any, content_type: str | None) -> Any:
    """A ready JSON body, made to ask for class probabilities."""
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidInput(f"proba needs a JSON body; a {content_type} body has no parameters")
    document = body
    if isinstance(body, bytes | str):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput("proba needs the body to be a JSON object")
    try:
        return asking_probabilities(protocol, document)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _access_body(access: Access) -> dict[str, Any]:
    if isinstance(access, ep.AccessSpec):
        return access.model_dump(mode="json", exclude_none=True)
    return dict(access)


def _capture_body(capture: Capture) -> dict[str, Any]:
    if isinstance(capture, ep.CaptureSpec):
        return capture.model_dump(mode="json")
    return dict(capture)


def _autoscaling_body(autoscaling: Autoscale) -> dict[str, Any]:
    if isinstance(autoscaling, ep.Autoscaling):
        return autoscaling.model_dump(mode="json")
    return dict(autoscaling)


def _variant_body(variant: Variant) -> dict[str, Any]:
    if isinstance(variant, ep.VariantSpec):
        return variant.model_dump(mode="json", exclude_none=True)
    return dict(variant)


def main_variant(spec: ep.EndpointSpec) -> ep.VariantSpec:
    """The variant `deploy` rolls over: `main`, else the first live one that is not the
    canary (the variant a canary takes its traffic from)."""
    live = [v for v in spec.variants if not v.shadow and v.name != "canary"]
    for variant in live:
        if variant.name == "main":
            return variant
    if not live:
        raise InvalidInput("the endpoint has no main variant to deploy to")
    return live[0]


def rolled_variants(
    spec: ep.EndpointSpec,
    model: str,
    *,
    replicas: int | None,
    batching: Mapping[str, Any],
    autoscaling: Mapping[str, Any] | None = None,
    instance_type: str | None = None,
) -> builtins.list[dict[str, Any]]:
    """The variants after `deploy`: the main one serves `model` with `replicas` (a fixed
    number: autoscaling off) or `autoscaling` (None for both: as now) and any new `batching`
    settings, keeping its traffic; the others are sent back as they are, pinned version
    included, so they do not change."""
    target = main_variant(spec).name
    out = []
    for variant in spec.variants:
        body = variant.model_dump(mode="json", exclude_none=True)
        if variant.name == target:
            body.pop("version", None)  # the server pins the new reference
            body["model"] = model
            if autoscaling is not None:
                body["autoscaling"] = dict(autoscaling)
            elif replicas is not None:
                body["replicas"] = replicas
                body.pop("autoscaling", None)
            body["batching"] = {**body.get("batching", {}), **batching}
            if instance_type is not None:
                body["instance_type"] = instance_type
        out.append(body)
    return out


def not_ready(endpoint: ep.EndpointRead) -> str | None:
    """None when the endpoint serves its spec with every replica ready and updated; else what
    it still waits for, for a person to read."""
    status = endpoint.status
    problems = []
    if status.observed_revision != endpoint.spec.revision:
        problems.append(f"the controller has not yet seen revision {endpoint.spec.revision}")
    observed = {v.name: v for v in status.variants}
    wanted = 0
    for variant in endpoint.spec.variants:
        seen = observed.get(variant.name)
        if seen is None:
            problems.append(f"variant {variant.name} not started")
            continue
        if variant.version is not None and seen.version != variant.version:
            problems.append(f"variant {variant.name} on version {seen.version}")
        # an autoscaled variant wants what its autoscaler decided (the controller's desired)
        desired = variant.replicas if variant.autoscaling is None else seen.desired
        wanted += desired
        if seen.desired != desired or seen.ready != desired or seen.updated != desired:
            note = f"variant {variant.name}: {seen.ready}/{desired} ready, {seen.updated} updated"
            problems.append(note + (f" ({seen.message})" if seen.message else ""))
    extra = len(status.replicas) - wanted
    if not problems and extra > 0:  # every variant has its replicas: these are older ones
        problems.append(f"{extra} replica(s) of an earlier spec still stopping")
    if status.phase == "ready" and not problems:
        return None
    head = f"phase {status.phase}" + (f": {status.message}" if status.message else "")
    return "; ".join([head, *problems])
