"""Recommendations: where a project could spend less, each with its monthly saving in money,
computed from the metered usage of a recent window (`days`, default 14) and the catalog in force.

- idle endpoint: metered since the window's first day, its replicas answered no request in the
  window → scale it to zero
  (`--min-replicas 0`) or delete it; saves what its replicas cost.
- over-provisioned variant: a fixed count of replicas whose model was busy under 10 % of their
  time → fewer replicas (enough to be busy half the time, at least one); saves the difference.
- spot job: a job that ran on demand → run it on spot; saves the price difference for its
  instance-hours, scaled to a month; the project's spot preemptions in the window are shown, as
  spot work may be stopped and resumed.
- reserved capacity: a variant whose replicas ran at least 90 % of the window's hours → reserve
  that capacity for a year; saves on-demand minus reserved for those hours, and the break-even
  (the share of the hours it must run for reserving to pay) is shown.

A month is 730 hours; a saving scales the window's figures by 730 / the window's hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select

from stratus.billing.prices import HOURS_PER_MONTH, PriceCatalog
from stratus.billing.schemas import Recommendation, Recommendations
from stratus.billing.tables import UsageDailyRow
from stratus.compute.instance_types import InstanceCatalog
from stratus.core.clock import utcnow
from stratus.core.database import Database
from stratus.core.errors import InvalidInput
from stratus.endpoints import schemas as s
from stratus.endpoints.service import DesiredEndpoint

IDLE_BUSY = 0.10  # a variant busy under this share of its replica time is over-provisioned
TARGET_BUSY = 0.50  # ... and needs enough replicas to be busy this much
STEADY = 0.90  # replicas running this share of the window's hours could be reserved
MIN_SAVING = 0.01  # a month, in the catalog's currency: below it, not worth saying


@dataclass(frozen=True)
class _Used:
    """A window's usage of one line (summed over its days)."""

    project: str
    meter: str
    subject: str
    variant: str
    instance_type: str
    pricing: str
    seconds: float
    requests: int
    busy: float
    cost: float
    first_day: str  # the first day of the window it was metered on


class Recommender:
    def __init__(
        self,
        db: Database,
        instance_types: InstanceCatalog,
        prices: Callable[[], tuple[int, PriceCatalog]],
        endpoints: Callable[[], list[DesiredEndpoint]],
        preemptions: Callable[[str, datetime], int],
    ) -> None:
        self.db = db
        self.instance_types = instance_types
        self.prices = prices
        self.endpoints = endpoints
        self.preemptions = preemptions

    def recommend(
        self, projects: Sequence[str] | None, days: int = 14, now: datetime | None = None
    ) -> Recommendations:
        if not 1 <= days <= 90:
            raise InvalidInput(f"days: from 1 to 90, not {days}")
        now = now or utcnow()
        since = now - timedelta(days=days)
        hours = days * 24.0
        scale = HOURS_PER_MONTH / hours
        catalog = self.prices()[1]
        u = UsageDailyRow
        conditions = [u.day >= since.strftime("%Y-%m-%d"), u.meter.in_(("replica", "job"))]
        if projects is not None:
            conditions.append(u.project.in_(list(projects)))
        with self.db.transaction() as session:
            rows = session.execute(
                select(
                    u.project, u.meter, u.subject, u.variant, u.instance_type, u.pricing,
                    func.sum(u.seconds), func.sum(u.requests), func.sum(u.request_seconds),
                    func.sum(u.cost), func.min(u.day),
                )
                .where(and_(*conditions))
                .group_by(u.project, u.meter, u.subject, u.variant, u.instance_type, u.pricing)
            ).all()  # fmt: skip
        used = [
            _Used(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                  float(r[6] or 0), int(r[7] or 0), float(r[8] or 0), float(r[9] or 0),
                  str(r[10]))
            for r in rows
        ]  # fmt: skip
        live = {(e.project, e.name): e for e in self.endpoints()}
        items: list[Recommendation] = []
        endpoints: dict[tuple[str, str], list[_Used]] = {}
        for line in used:
            key = (line.project, line.subject)
            if line.meter == "replica" and key in live and line.pricing != "per_request":
                endpoints.setdefault(key, []).append(line)
            elif line.meter == "job" and line.pricing == "on_demand":
                items.extend(self._spot(catalog, line, scale, since))
        for (project, name), lines in endpoints.items():
            endpoint = live[(project, name)]
            requests = sum(line.requests for line in lines)
            cost = sum(line.cost for line in lines)
            # idle for the whole window: metered from its first day on, and no request since
            whole = min(line.first_day for line in lines) <= since.strftime("%Y-%m-%d")
            if requests == 0 and cost > 0 and whole:
                main = _main(endpoint)
                items.append(
                    Recommendation(
                        kind="idle-endpoint",
                        project=project,
                        subject=name,
                        action=f"stratus deploy {name} --model {main} --min-replicas 0 "
                        f"--max-replicas 2 -p {project} (or stratus endpoints delete {name} "
                        f"-p {project})",
                        reason=f"no request in {days} days",
                        monthly_saving=round(cost * scale, 2),
                        currency=catalog.currency,
                    )
                )
                continue
            items.extend(self._variants(catalog, endpoint, lines, hours))
        items = [r for r in items if r.monthly_saving >= MIN_SAVING]
        items.sort(key=lambda r: -r.monthly_saving)
        return Recommendations(
            days=days,
            currency=catalog.currency,
            items=items,
            total_monthly_saving=round(sum(r.monthly_saving for r in items), 2),
        )

    def _variants(
        self,
        catalog: PriceCatalog,
        endpoint: DesiredEndpoint,
        lines: list[_Used],
        hours: float,
    ) -> list[Recommendation]:
        found = []
        for variant in endpoint.variants:
            mine = [line for line in lines if line.variant == variant.name]
            seconds = sum(line.seconds for line in mine)
            busy = sum(line.busy for line in mine)
            if seconds <= 0:
                continue
            try:
                size = self.instance_types.get(variant.instance_type)
            except InvalidInput:
                continue
            price = catalog.instance(size)
            where = f"{endpoint.name}/{variant.name}"
            share = busy / seconds
            if variant.autoscaling is None and variant.replicas > 1 and share < IDLE_BUSY:
                fewer = max(1, math.ceil(variant.replicas * share / TARGET_BUSY))
                if fewer < variant.replicas:
                    saving = (variant.replicas - fewer) * price.on_demand * HOURS_PER_MONTH
                    found.append(
                        Recommendation(
                            kind="over-provisioned",
                            project=endpoint.project,
                            subject=where,
                            action=(
                                f"stratus deploy {endpoint.name} --model {_main(endpoint)} "
                                f"--replicas {fewer} -p {endpoint.project}"
                                if variant.name == _main_variant(endpoint).name
                                else f"give variant {variant.name} {fewer} replicas"
                            ),
                            reason=f"its model was busy {share:.1%} of its replicas' time "
                            f"over the window; {fewer} would be busy about {TARGET_BUSY:.0%}",
                            monthly_saving=round(saving, 2),
                            currency=catalog.currency,
                        )
                    )
                    continue
            replicas_on = seconds / 3600.0 / hours  # replicas running, on average
            steady = math.floor(replicas_on / STEADY)
            if steady >= 1 and price.reserved < price.on_demand:
                saving = steady * (price.on_demand - price.reserved) * HOURS_PER_MONTH
                found.append(
                    Recommendation(
                        kind="reserved",
                        project=endpoint.project,
                        subject=where,
                        action=f"reserve {steady} × {size.name} for a year",
                        reason=f"{replicas_on:.2f} replicas ran on average over the window; "
                        f"reserving pays from {price.reserved / price.on_demand:.0%} of the "
                        "hours (break-even)",
                        monthly_saving=round(saving, 2),
                        currency=catalog.currency,
                    )
                )
        return found

    def _spot(
        self, catalog: PriceCatalog, line: _Used, scale: float, since: datetime
    ) -> list[Recommendation]:
        project, job = line.project, line.subject
        try:
            size = self.instance_types.get(line.instance_type)
        except InvalidInput:
            return []
        price = catalog.instance(size)
        hours = line.seconds / 3600.0
        saving = (price.on_demand - price.spot) * hours * scale
        if saving < 0.005:
            return []
        preempted = self.preemptions(project, since)
        return [
            Recommendation(
                kind="spot-job",
                project=project,
                subject=job,
                action="run it with --spot (it resumes from its last checkpoint when preempted)",
                reason=f"{hours:.2f} instance-hours of {size.name} on demand; spot jobs of this "
                f"project were preempted {preempted} times in the window",
                monthly_saving=round(saving, 2),
                currency=catalog.currency,
            )
        ]


def _main_variant(endpoint: DesiredEndpoint) -> s.VariantSpec:
    """The variant `deploy` rolls: `main`, else the first."""
    return next((v for v in endpoint.variants if v.name == "main"), endpoint.variants[0])


def _main(endpoint: DesiredEndpoint) -> str:
    """The model version its main variant serves."""
    variant = _main_variant(endpoint)
    return f"{variant.model.partition(':')[0].partition('@')[0]}:{variant.version}"
