"""The SDK's alerting API: alert rules (from dicts or a YAML file of one rule or many), their
history, test notifications, notification channels, and forwarding an Alertmanager payload."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.client._base import API, labels_of, read_yaml, seg
from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.monitoring import alert_schemas as al

if TYPE_CHECKING:
    from stratus.client._client import Client


def documents(source: str | Path | dict[str, Any] | builtins.list[Any], key: str) -> list[Any]:
    """The items of a YAML file (or a dict, or a list): one item, a list of them, or a
    mapping with a list under `key` (`rules:` or `channels:`)."""
    document = read_yaml(source) if isinstance(source, str | Path) else source
    if isinstance(document, dict) and key in document and len(document) == 1:
        document = document[key]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        return document
    where = source if isinstance(source, str | Path) else "the document"
    raise InvalidInput(f"{where}: expected a mapping, a list of them, or `{key}:` with a list")


class Channels(API):
    """Notification channels: `apply`, `apply_file`, `list`, `get`, `delete`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/notification-channels"

    def apply(self, project: str | None = None, **channel: Any) -> al.ChannelRead:
        """Create or replace a channel.

        Args:
            project: the project (default: the client's).
            **channel: the channel's fields: `name`, `type` (`webhook`, `slack` or `email`),
                then `url` and `headers`, or `to`, `sender`, `smtp_host`, `smtp_port`,
                `starttls`, `username`, `password`.

        Returns:
            The channel as stored: header values and the password show as `****`.

        Raises:
            stratus.errors.InvalidInput: a field is missing or wrong (the message names it).
        """
        return self._c._model(al.ChannelRead, "PUT", self._base(project), json=channel)

    def apply_file(
        self, path: str | Path, project: str | None = None
    ) -> builtins.list[al.ChannelRead]:
        """Apply the channels of a YAML file (one, a list, or `channels: [...]`)."""
        return [self.apply(project, **item) for item in documents(path, "channels")]

    def list(
        self,
        project: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        all_projects: bool = False,
    ) -> builtins.list[al.ChannelRead]:
        params = {"selector": labels_of(labels)} if labels else {}
        return list(
            self._c._pages(
                al.ChannelRead, self._base(ALL_PROJECTS if all_projects else project), params
            )
        )

    def get(self, name: str, project: str | None = None) -> al.ChannelRead:
        return self._c._model(al.ChannelRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")


class Alerts(API):
    """Alert rules: `apply`, `apply_file`, `list`, `get`, `delete`, `history`, `test`,
    `alertmanager`; and `channels` (notification channels)."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.channels = Channels(client)

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/alert-rules"

    def apply(self, project: str | None = None, **rule: Any) -> al.AlertRuleRead:
        """Create or replace an alert rule.

        Args:
            project: the project (default: the client's).
            **rule: the rule's fields: `name`, `metric`, `threshold`, and optionally `match`,
                `comparison` (default `>`), `for_seconds`, `severity`, `labels`, `summary`,
                `channels`, `description`, `enabled`.

        Returns:
            The rule, with the evaluator's last status.

        Raises:
            stratus.errors.InvalidInput: a field is wrong, or a channel does not exist.

        Example:
            client.alerts.apply(name="errors", metric="stratus_endpoint_error_ratio",
                                match={"endpoint": "churn"}, threshold=0.05, for_seconds=60,
                                channels=["oncall"])
        """
        return self._c._model(al.AlertRuleRead, "PUT", self._base(project), json=rule)

    def apply_file(
        self, path: str | Path, project: str | None = None
    ) -> builtins.list[al.AlertRuleRead]:
        """Apply the rules of a YAML file (one rule, a list, or `rules: [...]`)."""
        return [self.apply(project, **item) for item in documents(path, "rules")]

    def list(
        self,
        project: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        all_projects: bool = False,
    ) -> builtins.list[al.AlertRuleRead]:
        params = {"selector": labels_of(labels)} if labels else {}
        return list(
            self._c._pages(
                al.AlertRuleRead, self._base(ALL_PROJECTS if all_projects else project), params
            )
        )

    def get(self, name: str, project: str | None = None) -> al.AlertRuleRead:
        return self._c._model(al.AlertRuleRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")

    def history(
        self,
        project: str | None = None,
        *,
        rule: str | None = None,
        state: str | None = None,
        limit: int | None = 100,
    ) -> builtins.list[al.AlertEventRead]:
        """Firing and resolved changes, newest first (at most `limit`; None: all of them)."""
        path = f"/api/v1/projects/{self._project(project)}/alert-events"
        params: dict[str, Any] = {"rule": rule, "state": state}
        if limit is not None:
            params["limit"] = min(limit, 1000)
        events: builtins.list[al.AlertEventRead] = []
        for event in self._c._pages(al.AlertEventRead, path, params):
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
        return events

    def test(
        self,
        name: str,
        project: str | None = None,
        *,
        state: str = "firing",
        value: float | None = None,
    ) -> al.NotificationTestResult:
        """Send a test notification of the rule to its channels now; what each answered."""
        body: dict[str, Any] = {"state": state}
        if value is not None:
            body["value"] = value
        return self._c._model(
            al.NotificationTestResult,
            "POST",
            f"{self._base(project)}/{seg(name)}/test",
            json=body,
        )

    def alertmanager(
        self, payload: dict[str, Any], project: str | None = None
    ) -> al.AlertmanagerReceipt:
        """Deliver an Alertmanager webhook payload (version 4), as Alertmanager would."""
        path = f"/api/v1/projects/{self._project(project)}/alerts/alertmanager"
        return self._c._model(al.AlertmanagerReceipt, "POST", path, json=payload)
