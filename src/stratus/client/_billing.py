"""The SDK's billing API: cost reports, and the price catalog (read by anyone, replaced by a
platform admin)."""

from __future__ import annotations

import builtins
from datetime import datetime
from pathlib import Path
from typing import Any

from stratus.billing import schemas as bs
from stratus.client._base import API, read_yaml, seg
from stratus.core.errors import InvalidInput
from stratus.core.resource_schemas import ALL_PROJECTS


class Cost(API):
    """What projects spent: `report`."""

    def report(
        self,
        *,
        by: str = "project",
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        granularity: str = "day",
        project: str | None = None,
        all_projects: bool = False,
    ) -> bs.CostReport:
        """A cost report from the metered usage.

        Args:
            by: `project`, `endpoint`, `model` (serving and training together), `job` or
                `instance-type`.
            start: from (default: the start of this month, UTC); a datetime or ISO text.
            end: to (default: now).
            granularity: `day`, `hour` or `total`.
            project: the project (default: the client's).
            all_projects: every project (platform admins only).

        Returns:
            Lines per period and `by` key (cost, idle cost, requests, cost per request,
            instance-hours, GiB-hours), the total, the idle total and the month's forecast.

        Raises:
            stratus.errors.InvalidInput: an unknown `by` or granularity, or a bad range.
        """
        params: dict[str, Any] = {"by": by, "granularity": granularity}
        if start is not None:
            params["from"] = start.isoformat() if isinstance(start, datetime) else start
        if end is not None:
            params["to"] = end.isoformat() if isinstance(end, datetime) else end
        where = ALL_PROJECTS if all_projects else self._project(project)
        return self._c._model(
            bs.CostReport, "GET", f"/api/v1/projects/{where}/cost/report", params=params
        )

    def recommendations(
        self, *, days: int = 14, project: str | None = None, all_projects: bool = False
    ) -> bs.Recommendations:
        """Where to spend less, each with its monthly saving, from the last `days` of usage:
        idle endpoints, over-provisioned variants, jobs cheaper on spot, capacity cheaper
        reserved."""
        where = ALL_PROJECTS if all_projects else self._project(project)
        return self._c._model(
            bs.Recommendations,
            "GET",
            f"/api/v1/projects/{where}/cost/recommendations",
            params={"days": days},
        )


class Prices(API):
    """The price catalog: `get`, `versions`, `apply`, `apply_file`."""

    def get(self, version: int | None = None) -> bs.PricesRead:
        params = {"version": version} if version is not None else {}
        return self._c._model(bs.PricesRead, "GET", "/api/v1/prices", params=params)

    def versions(self) -> builtins.list[bs.PricesRead]:
        items = self._c._json("GET", "/api/v1/prices/versions")
        return [bs.PricesRead.model_validate(item) for item in items]

    def apply(self, catalog: dict[str, Any]) -> bs.PricesRead:
        """Replace the catalog (platform admins only): a new version prices what is metered
        from now on; what was metered before keeps its prices."""
        return self._c._model(bs.PricesRead, "PUT", "/api/v1/prices", json={"catalog": catalog})

    def apply_file(self, path: str | Path) -> bs.PricesRead:
        """Apply a catalog from YAML: the catalog itself, or what `get` returns (its
        `catalog` is applied), so that a listed catalog can be edited and applied."""
        document = read_yaml(path)
        if isinstance(document, dict) and isinstance(document.get("catalog"), dict):
            document = document["catalog"]
        if not isinstance(document, dict):
            raise InvalidInput(f"{path}: expected a mapping (see docs/cost.md)")
        return self.apply(document)


class Quotas(API):
    """A project's quotas: `get`, `set`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/quotas"

    def get(self, project: str | None = None) -> bs.QuotasRead:
        """The project's limits (None: no limit) and what it holds of each now."""
        return self._c._model(bs.QuotasRead, "GET", self._base(project))

    def set(self, project: str | None = None, **limits: float | int | None) -> bs.QuotasRead:
        """Replace the project's quotas (platform admins): `replicas`, `vcpus`, `memory_gib`,
        `gpus`, `jobs` (queued or running), `stored_bytes`; one left out is no limit.

        Raises:
            stratus.errors.InvalidInput: an unknown quota or a negative limit.
            stratus.errors.PermissionDenied: the caller is not a platform admin.
        """
        return self._c._model(bs.QuotasRead, "PUT", self._base(project), json=limits)


class Budgets(API):
    """Monthly budgets: `apply`, `apply_file`, `list`, `get`, `delete`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/budgets"

    def apply(
        self,
        amount: float,
        *,
        name: str = "monthly",
        thresholds: builtins.list[dict[str, Any]] | None = None,
        channels: builtins.list[str] | None = None,
        action: str = "none",
        project: str | None = None,
    ) -> bs.BudgetRead:
        """Create or replace a budget (project owners).

        Args:
            amount: per calendar month (UTC), in the price catalog's currency.
            name: the budget's name in the project.
            thresholds: e.g. `[{"percent": 80}, {"percent": 100, "basis": "forecast"}]`
                (default 50, 80 and 100 % of actual spend, and 100 % of the forecast).
            channels: alert channels told of each crossing.
            action: `freeze` to refuse new jobs and deploys, hold autoscaled endpoints at their
                minimum and stop spot jobs once 100 % is spent; `none` only tells.
            project: the project (default: the client's).
        """
        body: dict[str, Any] = {"name": name, "amount": amount, "action": action}
        if thresholds is not None:
            body["thresholds"] = thresholds
        if channels is not None:
            body["channels"] = channels
        return self._c._model(bs.BudgetRead, "PUT", self._base(project), json=body)

    def apply_file(self, path: str | Path, project: str | None = None) -> bs.BudgetRead:
        """Apply a budget from YAML (the fields of `apply`)."""
        document = read_yaml(path)
        if not isinstance(document, dict):
            raise InvalidInput(f"{path}: expected a mapping with amount, thresholds, channels")
        return self._c._model(bs.BudgetRead, "PUT", self._base(project), json=document)

    def list(self, project: str | None = None) -> builtins.list[bs.BudgetRead]:
        items = self._c._json("GET", self._base(project))
        return [bs.BudgetRead.model_validate(item) for item in items]

    def get(self, name: str, project: str | None = None) -> bs.BudgetRead:
        return self._c._model(bs.BudgetRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None) -> None:
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}")


class Reservations(API):
    """Reserved capacity: `get`, `set`."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/reservations"

    def get(self, project: str | None = None) -> bs.ReservationsRead:
        return self._c._model(bs.ReservationsRead, "GET", self._base(project))

    def set(
        self, instance_types: dict[str, int], project: str | None = None
    ) -> bs.ReservationsRead:
        """Replace the project's reservations (platform admins), e.g. `{"cpu.small": 2}`: the
        usage within them is priced at the catalog's reserved rate from the next pass on."""
        return self._c._model(
            bs.ReservationsRead,
            "PUT",
            self._base(project),
            json={"instance_types": instance_types},
        )
