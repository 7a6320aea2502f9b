"""The serving benchmark's verdicts and report: TARGETS.md's targets judged on the figures
of one run (ratios to references measured in the same run, medians of the interleaved
pairs), the first ones, the raised ones of 2026-12-02 and the Ray backend's, and the
tables of figures, rounds and targets printed at the end.
"""

from __future__ import annotations

import statistics
from typing import Any

from serving_config import REFERENCES


def figure(results: dict[str, Any], server: str, model: str, conc: int, key: str) -> float | None:
    point = results["servers"].get(server, {}).get(model, {}).get("wrk", {}).get(str(conc))
    return None if point is None else point.get(key)


OLD = "2026-11-21"
RAISED = "raised 2026-12-02"
RAY = "Ray backend (issue 13)"
SECURITY = "network security (issue 16)"


def run_value(run: dict[str, Any], key: str) -> float:
    return float(run["rps_ok"]) if key == "rps" else float(run[key.replace("_ms", "_us")]) / 1000


def pairs(
    results: dict[str, Any], server: str, ref: str, model: str, conc: int, key: str
) -> list[float]:
    """server / ref for each interleaved round that measured both (empty if none did)."""
    ours = figure_runs(results, server, model, conc)
    theirs = {r["round"]: r for r in figure_runs(results, ref, model, conc) if "round" in r}
    out = []
    for run in ours:
        other = theirs.get(run.get("round", -1))
        if other is not None and run_value(other, key):
            out.append(run_value(run, key) / run_value(other, key))
    return out


def figure_runs(results: dict[str, Any], server: str, model: str, conc: int) -> list[Any]:
    point = results["servers"].get(server, {}).get(model, {}).get("wrk", {}).get(str(conc))
    return [] if point is None else list(point.get("runs", []))


def relative_target(
    results: dict[str, Any],
    text: str,
    model: str,
    conc: int,
    key: str,
    ref: str,
    op: str,
    factor: float,
    when: str,
) -> dict[str, Any]:
    """Stratus against a reference of the same run: the median of the per-round ratios when the
    rounds were interleaved (TARGETS.md: "quote the median of the pairs"), else of medians."""
    ours = figure(results, "stratus", model, conc, key)
    theirs = figure(results, ref, model, conc, key)
    row: dict[str, Any] = {"set": when, "target": text, "stratus": ours, "reference": theirs}
    if ours is None or theirs is None or theirs == 0:
        missing = "stratus" if ours is None else ref
        row.update(verdict="not measured", why=f"no {model} c={conc} figure for {missing}")
        return row
    paired = pairs(results, "stratus", ref, model, conc, key)
    ratio = statistics.median(paired) if paired else ours / theirs
    ok = ratio >= factor if op == ">=" else ratio <= factor
    row.update(ratio=ratio, pairs=paired, verdict="PASS" if ok else "FAIL")
    if paired:
        row["why"] = (
            f"median of {len(paired)} round pair(s) {ratio:.2f}x ("
            + ", ".join(f"{x:.2f}" for x in paired)
            + f"); medians {ours:.4g} / {theirs:.4g} = {ours / theirs:.2f}x (target {op} {factor}x)"
        )
    else:
        row["why"] = f"{ours:.4g} / {theirs:.4g} = {ratio:.2f}x (target {op} {factor}x)"
    return row


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """TARGETS.md's Stratus targets, the first ones and the raised ones (each its own line):
    ratios to references measured in this run."""
    relative = [
        ("LR c=64 req/s >= 3x MLflow-w2", "lr", 64, "rps", "mlflow-w2", ">=", 3.0, OLD),
        ("LR c=64 req/s >= 0.9x thin-w2", "lr", 64, "rps", "thin-w2", ">=", 0.9, OLD),
        ("LR c=64 p99 <= 0.3x MLflow-w2's", "lr", 64, "p99_ms", "mlflow-w2", "<=", 0.3, OLD),
        ("LR c=1 p50 <= 2x thin-w2's", "lr", 1, "p50_ms", "thin-w2", "<=", 2.0, OLD),
        ("RF c=64 req/s >= 4x thin-w2", "rf", 64, "rps", "thin-w2", ">=", 4.0, OLD),
        ("RF c=64 req/s >= 2.5x BentoML-batch", "rf", 64, "rps", "bentoml-w2-batch", ">=", 2.5,
         OLD),
        ("RF c=64 p99 <= 0.3x BentoML-batch's", "rf", 64, "p99_ms", "bentoml-w2-batch", "<=",
         0.3, OLD),
    ]  # fmt: skip
    out = [relative_target(results, *t) for t in relative]
    stratus = results["servers"].get("stratus", {})
    out.append(cold_target(stratus, 1.0, OLD))
    # judged on the larger of: what the whole platform grew by (PSS at 2 replicas - at 1),
    # and the PSS of one replica at 2 replicas (comparable to "a thin worker: ~196 MB")
    extras = [
        (m, r["extra_replica_pss_mb"], max(r["memory_2_replicas"]["replica_pss_mb"]))
        for m, r in stratus.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    row: dict[str, Any] = {"set": OLD, "target": "idle memory per extra replica <= 100 MB PSS"}
    if extras:
        worst = max(max(x[1], x[2]) for x in extras)
        row.update(stratus=worst, verdict="PASS" if worst <= 100 else "FAIL")
        row["why"] = "; ".join(
            f"{m}: platform total +{delta:.0f} MB, a replica {one:.0f} MB"
            for m, delta, one in extras
        )
    else:
        row.update(verdict="not measured", why="no Stratus replica")
    out.append(row)
    out.append(capture_target(stratus))

    raised = [
        ("LR c=64 req/s >= 8x MLflow-w2", "lr", 64, "rps", "mlflow-w2", ">=", 8.0, RAISED),
        ("LR c=64 req/s >= 0.6x echo-w2 (no model: the HTTP limit)", "lr", 64, "rps", "echo-w2",
         ">=", 0.6, RAISED),
        ("LR c=64 p99 <= 0.3x MLflow-w2's (as before)", "lr", 64, "p99_ms", "mlflow-w2", "<=",
         0.3, RAISED),
        ("RF c=64 req/s >= 3.5x BentoML-batch", "rf", 64, "rps", "bentoml-w2-batch", ">=", 3.5,
         RAISED),
    ]  # fmt: skip
    out += [relative_target(results, *t) for t in raised[:3]]
    out.append(own_tail_target(results))
    out.append(relative_target(results, *raised[3]))
    out.append(cold_target(stratus, 0.25, RAISED))
    row = {"set": RAISED, "target": "idle memory per extra replica <= 30 MB added to the platform"}
    deltas = [
        (m, r["extra_replica_pss_mb"])
        for m, r in stratus.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    if deltas:
        worst = max(d for _, d in deltas)
        row.update(stratus=worst, verdict="PASS" if worst <= 30 else "FAIL")
        row["why"] = "; ".join(f"{m}: platform total PSS +{d:.0f} MB" for m, d in deltas)
    else:
        row.update(verdict="not measured", why="no Stratus replica")
    out.append(row)
    out.append(capture_pairs_target(stratus))
    out += rate_limit_targets(results, stratus)
    if "stratus-ray" in results["servers"]:
        out += ray_targets(results)
    return out


def cold_target(stratus: dict[str, Any], limit: float, when: str) -> dict[str, Any]:
    colds = [(m, r["cold_s"]) for m, r in stratus.items() if r.get("cold_s") is not None]
    row: dict[str, Any] = {"set": when, "target": f"cold start (deploy -> first 200) <= {limit} s"}
    if colds:
        worst_model, worst = max(colds, key=lambda x: x[1])
        row.update(stratus=worst, verdict="PASS" if worst <= limit else "FAIL")
        row["why"] = f"slowest deploy {worst:.2f} s ({worst_model}); " + ", ".join(
            f"{m}: " + "/".join(f"{c['cold_s']:.2f}" for c in stratus[m]["cold_starts"])
            for m, _ in colds
        )
    else:
        row.update(verdict="not measured", why="no Stratus deploy")
    return row


def own_tail_target(results: dict[str, Any]) -> dict[str, Any]:
    """Stratus's LR c=64 p99 against its own p50 (medians of the runs), each run's ratio too."""
    row: dict[str, Any] = {"set": RAISED, "target": "LR c=64 p99 <= 5x Stratus's own p50"}
    p50 = figure(results, "stratus", "lr", 64, "p50_ms")
    p99 = figure(results, "stratus", "lr", 64, "p99_ms")
    if not p50 or p99 is None:
        row.update(verdict="not measured", why="no lr c=64 figure for stratus")
        return row
    runs = figure_runs(results, "stratus", "lr", 64)
    per_run = [r["p99_us"] / r["p50_us"] for r in runs if r.get("p50_us")]
    ratio = p99 / p50
    row.update(stratus=ratio, per_run=per_run, verdict="PASS" if ratio <= 5.0 else "FAIL")
    row["why"] = (
        f"medians p99 {p99:.1f} ms / p50 {p50:.2f} ms = {ratio:.2f}x (target <= 5x); per run "
        + ", ".join(f"{x:.1f}x" for x in per_run)
    )
    return row


def ray_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13's figures for the Ray backend, against the local backend in the same run."""
    out: list[dict[str, Any]] = []
    ours, local = (
        figure(results, "stratus-ray", "lr", 64, "rps"),
        figure(results, "stratus", "lr", 64, "rps"),
    )
    row: dict[str, Any] = {"set": RAY, "target": "Ray: LR c=64 req/s >= 0.8x the local backend's"}
    if ours is None or not local:
        row.update(verdict="not measured", why="no LR c=64 figure on both backends")
    else:
        ratio = ours / local
        row.update(stratus=ours, reference=local, ratio=ratio)
        row.update(verdict="PASS" if ratio >= 0.8 else "FAIL")
        row["why"] = f"{ours:.4g} / {local:.4g} = {ratio:.2f}x (target >= 0.8x)"
    out.append(row)
    ray = results["servers"]["stratus-ray"]
    colds = [c["cold_s"] for r in ray.values() for c in r.get("cold_starts", [])]
    row = {"set": RAY, "target": "Ray: cold start (deploy -> first 200) <= 3 s"}
    if colds:
        worst = max(colds)
        row.update(stratus=worst, verdict="PASS" if worst <= 3.0 else "FAIL")
        row["why"] = "deploys: " + ", ".join(f"{c:.2f} s" for c in colds)
    else:
        row.update(verdict="not measured", why="no deploy on Ray")
    out.append(row)
    extras = [
        (m, r["extra_replica_pss_mb"], r["memory_2_replicas"])
        for m, r in ray.items()
        if r.get("extra_replica_pss_mb") is not None
    ]
    row = {"set": RAY, "target": "Ray: idle memory per extra replica (reported)"}
    if extras:
        row.update(stratus=max(x[1] for x in extras), verdict="reported")
        row["why"] = "; ".join(
            f"{m}: cluster and control plane +{delta:.0f} MB PSS (replica processes "
            + " + ".join(f"{x:.0f}" for x in mem["replica_pss_mb"])
            + " MB, their actors "
            + " + ".join(f"{x:.0f}" for x in mem["actor_pss_mb"])
            + " MB)"
            for m, delta, mem in extras
        )
    else:
        row.update(verdict="not measured", why="no replica on Ray")
    out.append(row)
    return out


def capture_target(stratus: dict[str, Any]) -> dict[str, Any]:
    """Throughput with capture at 100 % against without, from interleaved runs at the highest
    concurrency (the cost must stay under 10 %)."""
    row: dict[str, Any] = {"set": OLD, "target": "data capture at 100% < 10% throughput cost"}
    costs = pair_costs(stratus, "capture")
    if not costs:
        row.update(verdict="not measured", why="no run with capture (--no-capture?)")
        return row
    worst = max(costs, key=lambda c: c[2])
    row.update(stratus=worst[2], verdict="PASS" if worst[2] < 0.10 else "FAIL")
    row["why"] = "; ".join(
        f"{m} c={c}: {b:.0f} -> {w:.0f} req/s ({cost:+.1%} cost, medians of interleaved runs)"
        for m, c, cost, b, w in costs
    )
    return row


def capture_pairs_target(stratus: dict[str, Any]) -> dict[str, Any]:
    """The raised capture target: the median of the costs of the interleaved off/on pairs
    (run i with capture off, then run i at 100 %) stays under 5 %."""
    row: dict[str, Any] = {
        "set": RAISED,
        "target": "data capture at 100% < 5% throughput, in interleaved pairs",
    }
    costs = []
    for model, r in stratus.items():
        capture = r.get("capture")
        if not capture:
            continue
        each = [
            1 - on["rps_ok"] / off["rps_ok"]
            for off, on in zip(capture["off"]["runs"], capture["on"]["runs"], strict=False)
            if off["rps_ok"]
        ]
        if each:
            costs.append((model, capture["conc"], statistics.median(each), each))
    if not costs:
        row.update(verdict="not measured", why="no run with capture (--no-capture?)")
        return row
    worst = max(c[2] for c in costs)
    row.update(stratus=worst, verdict="PASS" if worst < 0.05 else "FAIL")
    row["why"] = pairs_text(costs)
    return row


def pair_costs(stratus: dict[str, Any], key: str) -> list[tuple[str, int, float, list[float]]]:
    """(model, concurrency, median cost, each pair's cost) of the interleaved off/on pairs
    kept under `key` of each model's figures: a pair's cost is 1 - on/off in req/s."""
    costs = []
    for model, r in stratus.items():
        pairs = r.get(key)
        if not pairs:
            continue
        each = [
            1 - on["rps_ok"] / off["rps_ok"]
            for off, on in zip(pairs["off"]["runs"], pairs["on"]["runs"], strict=False)
            if off["rps_ok"]
        ]
        if each:
            costs.append((model, pairs["conc"], statistics.median(each), each))
    return costs


def pairs_text(costs: list[tuple[str, int, float, list[float]]]) -> str:
    return "; ".join(
        f"{m} c={c}: median pair cost {cost:+.1%} (pairs "
        + ", ".join(f"{x:+.1%}" for x in each)
        + ")"
        for m, c, cost, each in costs
    )


def rate_limit_targets(results: dict[str, Any], stratus: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's bar: rate limiting costs the gateway at most a few microseconds a request
    (the checks alone, in-process); and, for the record, the throughput of interleaved
    off/on pairs with every limit set (none reached)."""
    row: dict[str, Any] = {
        "set": SECURITY,
        "target": "rate-limit checks <= 5 us per request (key + project + endpoint)",
    }
    checks = results.get("rate_limit_check")
    if checks:
        extra_us = max(0.0, checks["on_ns"] - checks["off_ns"]) / 1000
        row.update(stratus=extra_us, verdict="PASS" if checks["on_ns"] <= 5000 else "FAIL")
        row["why"] = (
            f"{checks['on_ns']:.0f} ns with limits, {checks['off_ns']:.0f} ns without "
            f"(+{extra_us:.2f} us)"
        )
    else:
        row.update(verdict="not measured", why="no Stratus run")
    pairs: dict[str, Any] = {
        "set": SECURITY,
        "target": "rate limits set (none reached): throughput cost in interleaved pairs",
    }
    costs = pair_costs(stratus, "rate_limit")
    if costs:
        worst = max(c[2] for c in costs)
        pairs.update(stratus=worst, verdict="info")
        pairs["why"] = pairs_text(costs)
    else:
        pairs.update(verdict="not measured", why="no run with limits (--no-rate-limits?)")
    held: dict[str, Any] = {
        "set": SECURITY,
        "target": "an endpoint's limit holds within 5% over 10 s under overload",
    }
    figures = [
        (m, r["rate_limit"]["held"])
        for m, r in stratus.items()
        if r.get("rate_limit", {}).get("held")
    ]
    if figures:
        worst = max(abs(h["passed"] / h["allowed"] - 1) for _, h in figures)
        held.update(stratus=worst, verdict="PASS" if worst <= 0.05 else "FAIL")
        held["why"] = "; ".join(
            f"{m}: {h['passed']} answered, {h['allowed']:.0f} allowed" for m, h in figures
        )
    else:
        held.update(verdict="not measured", why="no run with limits (--no-rate-limits?)")
    return [row, pairs, held]


def print_tables(results: dict[str, Any], concs: list[int]) -> None:
    print(
        "\n## Figures (medians over the rounds; x thin, x echo = req/s / thin-w2's, echo-w2's"
        " medians)"
    )
    head = ["server", "model", "cold s", "idle PSS MB"]
    for c in concs:
        head += [f"c={c} req/s", f"c={c} p50 ms", f"c={c} p99 ms", f"c={c} x thin", "x echo"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for server, per_model in results["servers"].items():
        for model, r in per_model.items():
            if "error" in r and "wrk" not in r:
                print(f"| {server} | {model} | ERROR: {r['error'][:100]} |")
                continue
            cells = [server, model, _fmt(r.get("cold_s"), 2), _fmt(r.get("idle_pss_mb"), 0)]
            for c in concs:
                rps = figure(results, server, model, c, "rps")
                thin = figure(results, "thin-w2", model, c, "rps")
                echo = figure(results, "echo-w2", model, c, "rps")
                cells += [
                    _fmt(rps, 0),
                    _fmt(figure(results, server, model, c, "p50_ms"), 2),
                    _fmt(figure(results, server, model, c, "p99_ms"), 1),
                    _fmt(rps / thin if rps is not None and thin else None, 2),
                    _fmt(rps / echo if rps is not None and echo else None, 2),
                ]
            print("| " + " | ".join(cells) + " |")
    print_rounds(results)
    for model, r in results["inprocess"].items():
        print(
            f"in-process {model}: predict 1 row {r['predict_1row_us']:.0f} us, 64 rows "
            f"{r['predict_64rows_us']:.0f} us ({r['predict_64rows_rows_s']:.0f} rows/s), "
            f"json+predict+dump {r['handler_1row_us']:.0f} us"
        )
    for server in REFERENCES:
        if server not in results["servers"]:
            print(f"{server}: not measured ({results['skipped'].get(server, 'skipped')})")


def print_rounds(results: dict[str, Any]) -> None:
    """Each interleaved round: every server's req/s and p99 (p99/p50 too, for Stratus)."""
    for model, rounds in results["meta"]["interleaved"]["rounds"].items():
        if not rounds:
            continue
        servers = sorted({s for r in rounds for s in r["order"]}, key=rounds[0]["order"].index)
        print(f"\n## Rounds, {model} (req/s, p99 ms; the order each round ran in)")
        print("| round | c | " + " | ".join(servers) + " | order |")
        print("|" + "---|" * (len(servers) + 3))
        for r in rounds:
            cells = [str(r["round"]), str(r["conc"])]
            for server in servers:
                run = next(
                    (x for x in figure_runs(results, server, model, r["conc"])
                     if x.get("round") == r["round"]),
                    None,
                )  # fmt: skip
                if run is None:
                    cells.append("-")
                    continue
                cell = f"{run['rps_ok']:.0f} ({run['p99_us'] / 1000:.1f})"
                if server.startswith("stratus") and run.get("p50_us"):
                    cell += f" p99/p50 {run['p99_us'] / run['p50_us']:.1f}"
                cells.append(cell)
            print("| " + " | ".join(cells) + " | " + " > ".join(r["order"]) + " |")


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\n## Targets (TARGETS.md; ratios to references measured in this run, medians of pairs)")
    last = None
    for t in targets:
        if t.get("set") != last:
            last = t.get("set")
            print(f"-- {last}")
        print(f"{t['verdict']:>12}  {t['target']}: {t.get('why', '')}")


def _fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
