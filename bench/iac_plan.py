#!/usr/bin/env python3
"""IaC plan benchmark: `stratus plan` over --resources resources (2,000 by default) that are
already live, goal under 2 s, on SQLite and on PostgreSQL (a throwaway cluster on 127.0.0.1,
started with initdb/pg_ctl as tests/conftest.py does).

For each database a throwaway platform (stratus.testing.LocalPlatform) is started and files
are generated in a temporary folder: one subfolder per project (resources / 100 projects),
each declaring the project and a mix of cheap kinds (buckets, alert rules, budgets, service
accounts, secrets created from the environment, alert channels), with `${team}` from a
values.yaml. The files are applied (one apply per project: an apply creates at most 100
secrets), then planned --repeats times, each plan asserted to change nothing:

  SDK   client.iac.plan(folder) in this process: reading the files, then the request;
        each part is also timed on its own
  CLI   `stratus plan -f FOLDER --detailed-exitcode` as a subprocess (wall time, start-up
        included), as a user or CI runs it

then again with 1 % of the bucket descriptions edited in the files, asserted to report
exactly those updates. With --profile, the platform is then stopped and the same plan runs
in this process on its home and database, under cProfile and counting SQL statements, to
show where the server's time goes. Loopback only; every loop bounded; the platforms and the
PostgreSQL cluster are stopped by PID at the end. Run from the repository root:

    .venv/bin/python bench/iac_plan.py                       # both databases, ~6 min
    .venv/bin/python bench/iac_plan.py --db sqlite --resources 500 --repeats 3 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from stratus.client import Client  # noqa: E402
from stratus.testing import LocalPlatform, PostgresMissing, throwaway_postgres  # noqa: E402

GOAL_S = 2.0
PER_PROJECT = 100  # resources per project, the project itself included
#: the kinds besides the project, and their share of a project's resources
MIX = (
    ("Bucket", 30),
    ("AlertRule", 25),
    ("Budget", 14),
    ("ServiceAccount", 10),
    ("Secret", 10),
    ("AlertChannel", 10),
)
#: the secrets' value, read by the SDK in this process (LocalPlatform passes no STRATUS_*
#: variable on to the platform)
SECRET_ENV = "STRATUS_BENCH_IAC_SECRET"
CHANGED = "changed by the benchmark"


# --- the files -------------------------------------------------------------------------------


@dataclass
class Layout:
    """What the files declare: project name -> count per kind (the project aside)."""

    projects: dict[str, dict[str, int]]

    @classmethod
    def of(cls, resources: int) -> Layout:
        count = max(1, round(resources / PER_PROJECT))
        base, extra = divmod(resources, count)
        projects = {}
        for p in range(count):
            inside = base + (1 if p < extra else 0) - 1  # the project document is one
            projects[f"bench-{p:03d}"] = _mix(max(0, inside))
        return cls(projects)

    @property
    def total(self) -> int:
        return sum(1 + sum(kinds.values()) for kinds in self.projects.values())

    def by_kind(self) -> Counter[str]:
        out: Counter[str] = Counter({"Project": len(self.projects)})
        for kinds in self.projects.values():
            out.update(kinds)
        return out

    def buckets(self) -> list[tuple[str, str]]:
        return [(p, f"b{i:03d}") for p, k in self.projects.items() for i in range(k["Bucket"])]


def _mix(n: int) -> dict[str, int]:
    weight = sum(w for _, w in MIX)
    out = {kind: n * w // weight for kind, w in MIX}
    for kind, _ in MIX[: n - sum(out.values())]:
        out[kind] += 1
    if out["AlertChannel"] == 0 and (out["AlertRule"] or out["Budget"]) and n:
        # rules and budgets notify a channel: one of the largest kind's share becomes one
        largest = max(out, key=lambda k: out[k])
        out[largest] -= 1
        out["AlertChannel"] = 1
    return out


def _docs(*documents: str) -> str:
    return "---\n".join(textwrap.dedent(d).lstrip("\n") for d in documents)


def write_files(root: Path, layout: Layout, changed: set[tuple[str, str]]) -> None:
    """The files, one folder per project; the buckets in `changed` with another description."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "values.yaml").write_text("team: bench\nwebhook: http://127.0.0.1:9/alerts\n")
    for project, kinds in layout.projects.items():
        folder = root / project
        folder.mkdir(exist_ok=True)
        channels = kinds["AlertChannel"]

        def notify(i: int, channels: int = channels) -> str:
            return f"[ops-{i % channels:02d}]" if channels else "[]"

        files: dict[str, list[str]] = defaultdict(list)
        files["project"].append(
            f"""
            kind: Project
            metadata: {{name: {project}, labels: {{team: "${{team}}"}}}}
            spec: {{description: benchmark project {project}}}
            """
        )
        for i in range(kinds["ServiceAccount"]):
            files["accounts"].append(
                f"""
                kind: ServiceAccount
                metadata: {{name: sa-{i:02d}, project: {project}, labels: {{team: "${{team}}"}}}}
                spec: {{description: deploys from CI {i}, role: {("viewer", "editor")[i % 2]}}}
                """
            )
        for i in range(kinds["Secret"]):
            files["secrets"].append(
                f"""
                kind: Secret
                metadata: {{name: TOKEN_{i:02d}, project: {project}}}
                spec: {{description: a token {i}, from_env: {SECRET_ENV}}}
                """
            )
        for i in range(kinds["Bucket"]):
            name = f"b{i:03d}"
            description = CHANGED if (project, name) in changed else f"raw data {i}"
            files["buckets"].append(
                f"""
                kind: Bucket
                metadata: {{name: {name}, project: {project}, labels: {{team: "${{team}}"}}}}
                spec: {{description: {description}}}
                """
            )
        for i in range(channels):
            files["channels"].append(
                f"""
                kind: AlertChannel
                metadata: {{name: ops-{i:02d}, project: {project}}}
                spec: {{type: webhook, url: "${{webhook}}", description: on-call {i}}}
                """
            )
        for i in range(kinds["AlertRule"]):
            files["rules"].append(
                f"""
                kind: AlertRule
                metadata: {{name: rule-{i:03d}, project: {project}, labels: {{team: ml}}}}
                spec:
                  metric: stratus_endpoint_error_ratio
                  match: {{endpoint: api-{i:03d}}}
                  threshold: {0.01 * (i % 10 + 1):.2f}
                  for_seconds: {60 * (i % 5)}
                  channels: {notify(i)}
                """
            )
        for i in range(kinds["Budget"]):
            files["budgets"].append(
                f"""
                kind: Budget
                metadata: {{name: budget-{i:02d}, project: {project}}}
                spec: {{amount: {100 * (i + 1)}, channels: {notify(i)}}}
                """
            )
        for name, documents in files.items():
            (folder / f"{name}.yaml").write_text(_docs(*documents))


# --- PostgreSQL --------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (stratus.testing's, as the tests use)."""
    try:
        with throwaway_postgres("stratus-iac-bench-pg-") as url:
            yield url
    except PostgresMissing as exc:
        sys.exit(f"{exc}, or run with --db sqlite")


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def line(self, goal: bool = True) -> str:
        text = (
            f"{self.label:<44} median {self.median:6.2f} s  min {min(self.times):6.2f}  "
            f"max {max(self.times):6.2f}"
        )
        if goal:
            verdict = "PASS" if self.median < GOAL_S else "FAIL"
            text += f"  ({self.median / GOAL_S:.2f}x the {GOAL_S:g} s goal: {verdict})"
        return text


def timed(label: str, repeats: int, fn: Callable[[], Any]) -> tuple[Timing, Any]:
    timing, result = Timing(label), None
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        timing.times.append(time.perf_counter() - began)
    return timing, result


def stratus_command() -> list[str]:
    script = Path(sys.executable).parent / "stratus"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "stratus"]


def cli_plan(platform: LocalPlatform, folder: Path, expect_code: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(platform.cli_env())
    done = subprocess.run(
        [*stratus_command(), "plan", "-f", str(folder), "--detailed-exitcode"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != expect_code:
        raise AssertionError(
            f"stratus plan exited {done.returncode}, not {expect_code}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return done.stdout


# --- one database ----------------------------------------------------------------------------


@dataclass
class Result:
    db: str
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)


def populate(client: Client, root: Path, layout: Layout, result: Result) -> None:
    began = time.perf_counter()
    values = {"team": "bench", "webhook": "http://127.0.0.1:9/alerts"}
    for project in layout.projects:
        applied = client.iac.apply(root / project, variables=values)
        if applied.failed is not None:
            raise AssertionError(f"applying {project} failed: {applied.error}")
    kinds = ", ".join(f"{k} {n:,}" for k, n in layout.by_kind().most_common())
    result.say(
        f"  applied {layout.total:,} resources in {len(layout.projects)} projects ({kinds}) "
        f"in {time.perf_counter() - began:.1f} s"
    )


def bench_db(db: str, url: str | None, args: argparse.Namespace, work: Path) -> Result:
    from stratus.client._iac import load_documents

    result = Result(db)
    layout = Layout.of(args.resources)
    total = layout.total
    root = work / db / "infra"
    write_files(root, layout, set())
    platform = LocalPlatform(work / db / "home", db=url)
    began = time.perf_counter()
    platform.start(timeout=180)
    print(f"\n{db}: platform up in {time.perf_counter() - began:.1f} s (pid {platform.pid})")
    try:
        with Client(
            url=platform.url, api_key=platform.api_key, home=platform.home, timeout=900
        ) as client:
            os.environ[SECRET_ENV] = "bench-secret-value"
            populate(client, root, layout, result)
            documents = load_documents([root])
            body = len(json.dumps({"documents": documents}).encode())
            result.say(f"  a plan sends {len(documents):,} documents in {body / 1024:,.0f} KiB")

            def sdk_plan() -> Any:
                plan = client.iac.plan(root)
                assert not plan.changed, [c.address for c in plan.changes if c.action != "no-op"]
                assert plan.summary.unchanged == total, plan.summary
                return plan

            sdk_plan()  # warm: the first request pays for imports and caches
            sdk, _ = timed(f"plan {total} resources, {db}, SDK", args.repeats, sdk_plan)
            load, _ = timed(
                "  of which reading the files", args.repeats, lambda: load_documents([root])
            )
            request, _ = timed(
                "  of which the request (documents given)",
                args.repeats,
                lambda: client.iac.plan(documents),
            )
            cli, _ = timed(
                f"plan {total} resources, {db}, CLI",
                args.repeats,
                lambda: cli_plan(platform, root, 0),
            )
            out = cli_plan(platform, root, 0)
            assert f"Plan: 0 to create, 0 to update, 0 to delete ({total} unchanged)." in out, out
            # the CLI's floor: start-up and a plan of one new project
            one = work / db / "one.yaml"
            one.write_text("kind: Project\nmetadata: {name: bench-one}\n")
            floor, _ = timed(
                "  the CLI's floor: a plan of 1 resource",
                args.repeats,
                lambda: cli_plan(platform, one, 2),
            )
            timings = ((sdk, True), (load, False), (request, False), (cli, True), (floor, False))
            for timing, goal in timings:
                result.say("  " + timing.line(goal))

            # 1 % of the resources changed: that many bucket descriptions edited in the files
            buckets = layout.buckets()
            count = min(len(buckets), max(1, total // 100))
            step = max(1, len(buckets) // count)
            changed = set(buckets[::step][:count])
            write_files(root, layout, changed)
            wanted = {f"Bucket/{p}/{b}" for p, b in changed}

            def changed_plan() -> Any:
                plan = client.iac.plan(root)
                updates = [c for c in plan.changes if c.action != "no-op"]
                assert {c.address for c in updates} == wanted, sorted(c.address for c in updates)
                assert all(c.action == "update" for c in updates)
                assert all(
                    [(f.path, f.after) for f in c.fields] == [("spec.description", CHANGED)]
                    for c in updates
                )
                assert plan.summary.update == count and plan.summary.unchanged == total - count
                return plan

            some, _ = timed(f"plan with {count} changed, {db}, SDK", args.repeats, changed_plan)
            some_cli, out = timed(
                f"plan with {count} changed, {db}, CLI",
                args.repeats,
                lambda: cli_plan(platform, root, 2),
            )
            said = f"Plan: 0 to create, {count} to update, 0 to delete ({total - count} unchanged)."
            assert said in out, out[-500:]
            assert sum(line.startswith("~ update Bucket/") for line in out.splitlines()) == count
            result.say("  " + some.line())
            result.say("  " + some_cli.line())
            result.say(f"    both report exactly the {count} edited buckets: {said}")
            write_files(root, layout, set())
        if args.profile:
            platform.stop(timeout=60)
            profile(db, url, platform.home, root, args, result)
    finally:
        platform.stop(timeout=60)
        os.environ.pop(SECRET_ENV, None)
    return result


# --- where the server's time goes ------------------------------------------------------------


def _shape(statement: str) -> str:
    """A SQL statement's shape: the first line, whitespace and IN-lists collapsed."""
    text = " ".join(statement.split())
    text = re.sub(r"\((?:[^()]*?__\[POSTCOMPILE_[^\]]+\][^()]*)\)", "(...)", text)
    text = re.sub(r"SELECT .*? FROM", "SELECT ... FROM", text, count=1)
    return text[:150]


@dataclass
class Statements:
    """SQL statements run on an engine, by shape: how many, and the seconds in the driver."""

    counts: Counter[str] = field(default_factory=Counter)
    spent: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    transactions: int = 0


@contextlib.contextmanager
def counting(engine: Any) -> Iterator[Statements]:
    from sqlalchemy import event

    seen, started = Statements(), []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        started.append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        shape = _shape(statement)
        seen.counts[shape] += 1
        seen.spent[shape] += time.perf_counter() - started.pop()

    def begin(conn: Any) -> None:
        seen.transactions += 1

    hooks = (("before_cursor_execute", before), ("after_cursor_execute", after), ("begin", begin))
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield seen
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)


#: the planner's phases, as planning.py names them
PHASES = ("_checked", "_lives", "_apply_changes", "_deletions")


def _stats_lines(profiler: cProfile.Profile, order: str, restrict: str, top: int) -> list[str]:
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(restrict, top)
    repo = str(Path(__file__).resolve().parents[1])
    lines = text.getvalue().splitlines()
    return [line.replace(repo, "") for line in lines if re.match(r"\s*(\d|ncalls)", line)]


def _phases(profiler: cProfile.Profile) -> str:
    stats: dict[tuple[str, int, str], Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    found = {
        func: cumulative
        for (file, _, func), (_, _, _, cumulative, _) in stats.items()
        if file.endswith("iac/planning.py") and func in PHASES
    }
    checked, lives, changes, deletions = (found.get(name, 0.0) for name in PHASES)
    return (
        f"_checked {checked:.2f} s, _lives {lives:.2f} s, _apply_changes {changes:.2f} s "
        f"(of which _deletions {deletions:.2f} s)"
    )


def profile(
    db: str, url: str | None, home: Path, root: Path, args: argparse.Namespace, result: Result
) -> None:
    """The plan, in this process, on the platform's home and database (its server stopped):
    the planner alone, timed, then under cProfile with every SQL statement counted."""
    from stratus.api.platform import Platform
    from stratus.client._iac import load_documents
    from stratus.client.credentials import read_credentials
    from stratus.core.settings import load_settings
    from stratus.iac.schemas import PlanRequest

    settings = load_settings({"home": str(home), "db": {"url": url} if url else None})
    platform = Platform.build(settings, Platform.master_key(settings))
    try:
        creds = read_credentials(home)
        assert creds is not None and creds.api_key is not None
        principal = platform.authenticator.authenticate(creds.api_key)
        documents = load_documents([root])
        began = time.perf_counter()
        request = PlanRequest.model_validate({"documents": documents})
        validate_s = time.perf_counter() - began

        def plan() -> Any:
            return platform.planner.plan(principal, request.documents)

        plan()  # warm
        alone, made = timed("planner.plan alone", args.repeats, plan)
        began = time.perf_counter()
        encoded = made.model_dump_json()
        encode_s = time.perf_counter() - began
        profiler = cProfile.Profile()
        with counting(platform.db.engine) as seen:
            began = time.perf_counter()
            profiler.runcall(plan)
            profiled_s = time.perf_counter() - began
    finally:
        platform.db.dispose()

    say = result.say
    say(f"\n  profile, {db} (the planner in this process, no HTTP):")
    say("    " + alone.line(goal=False))
    say(
        f"    validating the {len(documents):,} documents {validate_s:.2f} s; encoding the plan "
        f"({len(encoded) / 1024:,.0f} KiB) {encode_s:.2f} s"
    )
    say(f"    a profiled plan: {profiled_s:.2f} s; its phases: {_phases(profiler)}")
    say(
        f"    {sum(seen.counts.values()):,} SQL statements in {seen.transactions:,} "
        f"transactions, {sum(seen.spent.values()):.2f} s in the driver; the most frequent:"
    )
    for shape, n in seen.counts.most_common(args.top):
        say(f"    {n:6,}  {seen.spent[shape]:6.3f} s  {shape}")
    say("    cumulative time by function (stratus code):")
    for line in _stats_lines(profiler, "cumulative", "stratus/", args.top * 2):
        say("    " + line)
    say("    own time by function (everything):")
    for line in _stats_lines(profiler, "tottime", "", args.top):
        say("    " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="then profile the server's plan in this process"
    )
    parser.add_argument("--top", type=int, default=15, help="lines of the profile to show")
    args = parser.parse_args()
    if args.resources < 10 or args.repeats < 1:
        parser.error("--resources is at least 10 (a mix of kinds) and --repeats at least 1")
    results = []
    with tempfile.TemporaryDirectory(prefix="stratus-iac-bench-") as scratch:
        work = Path(scratch)
        if args.db in ("sqlite", "both"):
            results.append(bench_db("sqlite", None, args, work))
        if args.db in ("postgres", "both"):
            with postgres() as url:
                results.append(bench_db("postgres", url, args, work))
    print("\nsummary:")
    for result in results:
        for line in result.lines:
            if line.lstrip().startswith("plan "):
                print(line)


if __name__ == "__main__":
    main()
