#!/usr/bin/env python3
"""Cost report benchmark: 30 days of hourly usage for --endpoints endpoints (one line per
endpoint and hour, plus an idle line for every fourth endpoint-hour and the jobs and buckets of
ten projects), written as the meter writes them, then the reports a user asks for, timed on
SQLite and (with --postgres URL, a server you started) PostgreSQL:

  month by endpoint   --by endpoint --granularity total over the 30 days   goal < 1 s
  month by project    --by project --granularity day
  month by model      --by model --granularity total
  a day by endpoint   --by endpoint --granularity hour over the last day

Each report runs --repeats times; the median and the fastest are printed, with the rows read.
The reference, measured in the same run, is a plain `SELECT SUM(cost)` over the month's hourly
lines: what any report that read them would cost at least. Day and total reports read the daily
lines instead (30x fewer), hence ratios under 1. Run from the repository root:

    .venv/bin/python bench/cost_report.py                      # ~1 min
    .venv/bin/python bench/cost_report.py --postgres postgresql+psycopg://u@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stratus.billing import schemas as s  # noqa: E402
from stratus.billing.metering import Line  # noqa: E402
from stratus.billing.service import BillingService  # noqa: E402
from stratus.billing.tables import (  # noqa: E402
    MeterStateRow,
    PriceCatalogRow,
    UsageDailyRow,
    UsageRecordRow,
    UsageRow,
)
from stratus.core.database import Base, Database  # noqa: E402

END = datetime(2026, 12, 31, 0, 0, tzinfo=UTC)
DAYS = 30


def fill(db: Database, endpoints: int) -> int:
    tables = [
        t.__table__
        for t in (PriceCatalogRow, UsageRow, UsageDailyRow, UsageRecordRow, MeterStateRow)
    ]
    Base.metadata.drop_all(db.engine, tables=tables)  # type: ignore[arg-type]
    Base.metadata.create_all(db.engine, tables=tables)  # type: ignore[arg-type]
    start = END - timedelta(days=DAYS)
    hours = [start + timedelta(hours=h) for h in range(DAYS * 24)]
    rows = 0
    batch: list[dict[str, object]] = []
    days: dict[tuple[str, str], dict[str, object]] = {}

    def flush() -> None:
        nonlocal batch
        if batch:
            with db.transaction() as session:
                session.execute(insert(UsageRow), batch)
            batch = []

    for e in range(endpoints):
        project = f"team-{e % 10}"
        for idle in (False, True) if e % 4 == 0 else (False,):
            line = Line(
                project=project,
                meter="replica",
                subject_kind="endpoint",
                subject=f"endpoint-{e}",
                pricing="on_demand",
                catalog_version=1,
                variant="main",
                model_version=f"model-{e}:1",
                instance_type="cpu.small",
                idle=idle,
            )
            key = line.key
            for hour in hours:
                batch.append(
                    dict(
                        key=key,
                        hour=hour,
                        day=hour.strftime("%Y-%m-%d"),
                        project=project,
                        meter="replica",
                        subject_kind="endpoint",
                        subject=line.subject,
                        variant="main",
                        model_version=line.model_version,
                        instance_type="cpu.small",
                        pricing="on_demand",
                        idle=idle,
                        catalog_version=1,
                        seconds=3600.0,
                        vcpu_seconds=3600.0,
                        gib_seconds=7200.0,
                        gpu_seconds=0.0,
                        requests=0 if idle else 1000,
                        request_seconds=1.0,
                        gib_hours=0.0,
                        cost=0.0425,
                    )
                )
                day = dict(batch[-1])
                day.pop("hour")
                found = days.get((key, str(day["day"])))
                if found is None:
                    days[(key, str(day["day"]))] = day
                else:
                    for name in ("seconds", "vcpu_seconds", "gib_seconds", "requests", "cost"):
                        found[name] = found[name] + day[name]  # type: ignore[operator]
                rows += 1
                if len(batch) >= 20_000:
                    flush()
    flush()
    with db.transaction() as session:
        session.execute(insert(UsageDailyRow), list(days.values()))
    return rows


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), result


def run(name: str, url: str, endpoints: int, repeats: int) -> None:
    db = Database(url)
    began = time.perf_counter()
    rows = fill(db, endpoints)
    print(f"\n{name}: {rows:,} hourly lines written in {time.perf_counter() - began:.1f} s")
    billing = BillingService(db)
    start = END - timedelta(days=DAYS)

    def reference() -> object:
        with db.transaction() as session:
            return session.scalar(
                select(func.sum(UsageRow.cost)).where(UsageRow.hour >= start, UsageRow.hour < END)
            )

    ref_median, ref_min, _ = timed(reference, repeats)
    print(
        f"  {'reference: SUM(hourly)':<22} median {ref_median * 1000:7.1f} ms  "
        f"min {ref_min * 1000:7.1f} ms"
    )
    cases = [
        ("month by endpoint", s.By.endpoint, start, s.Granularity.total, "< 1 s"),
        ("month by project", s.By.project, start, s.Granularity.day, ""),
        ("month by model", s.By.model, start, s.Granularity.total, ""),
        ("a day by endpoint", s.By.endpoint, END - timedelta(days=1), s.Granularity.hour, ""),
    ]
    for label, by, since, granularity, goal in cases:

        def report(
            by: s.By = by, since: datetime = since, g: s.Granularity = granularity
        ) -> object:
            return billing.report(None, by=by, start=since, end=END, granularity=g, now=END)

        median, fastest, result = timed(report, repeats)
        lines = len(result.lines)  # type: ignore[attr-defined]
        verdict = ""
        if goal:
            verdict = "PASS" if median < 1.0 else "FAIL"
            verdict = f"  goal {goal}: {verdict}"
        print(
            f"  {label:<22} median {median * 1000:7.1f} ms  min {fastest * 1000:7.1f} ms  "
            f"{lines:,} lines  {median / ref_median:5.1f}x the reference{verdict}"
        )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", help="a PostgreSQL URL (its billing tables are replaced)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stratus-cost-bench-") as folder:
        run("SQLite", f"sqlite:///{folder}/bench.db", args.endpoints, args.repeats)
    if args.postgres:
        run("PostgreSQL", args.postgres, args.endpoints, args.repeats)


if __name__ == "__main__":
    main()
