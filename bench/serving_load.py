"""The serving benchmark's load: wrk runs (peers_serving.py's runner and Lua script, plus our
headers) against the servers that are up (`Prepared`), as a matrix for one server or in
interleaved rounds across all of them, and the medians that summarize the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": med([r["rps_ok"] for r in runs]),
        "p50_ms": med([r["p50_us"] / 1000 for r in runs]),
        "p99_ms": med([r["p99_us"] / 1000 for r in runs]),
        "errors": sum(int(r["errors"]) for r in runs),
        "requests": sum(int(r["requests"]) for r in runs),
    }


def write_lua(ps: ModuleType, path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """peers_serving.py's wrk script (same `done` report), plus our headers."""
    text: str = ps.LUA % body.decode()
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    marker = 'wrk.headers["Content-Type"] = "application/json"\n'
    assert marker in text, "peers_serving.LUA changed shape"
    path.write_text(text.replace(marker, marker + extra))
    return path


@dataclasses.dataclass
class Prepared:
    """A server up, measured at idle, and waiting for its share of the load rounds."""

    name: str
    url: str
    lua: Path
    res: dict[str, Any]  # results["servers"][name][model]
    finish: Callable[[], None]  # after the rounds: stop it (or Stratus: capture, delete)
    error: str | None = None  # a wrk run failed: left out of the later rounds


def load_matrix(
    ps: ModuleType, url: str, lua: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """wrk at each concurrency (after a discarded warm-up), `--repeats` runs per point."""
    if args.warmup > 0:
        ps.wrk(url, str(lua), 8, args.warmup)
    out: dict[str, dict[str, Any]] = {}
    for conc in args.concs:
        runs = []
        for rep in range(args.repeats):
            w = ps.wrk(url, str(lua), conc, args.duration)
            runs.append(w)
            print(
                f"    c={conc:3d} run{rep}: {w['rps_ok']:8.1f} req/s"
                f"  p50 {w['p50_us'] / 1000:7.2f} ms  p99 {w['p99_us'] / 1000:7.2f} ms"
                f"  errors {w['errors']}",
                flush=True,
            )
        out[str(conc)] = {"runs": runs, **summarize_runs(runs)}
    return out


def load_rounds(
    ps: ModuleType, servers: list[Prepared], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every server in every round: after a discarded warm-up of each, for each concurrency
    `--repeats` rounds, each running wrk once against every server in turn, the order rotated
    by one each round (no server always first); then medians per server into res["wrk"].
    Each run records its round and its position in it. Returns the rounds (conc, order)."""
    for s in servers:
        if args.warmup > 0:
            try:
                ps.wrk(s.url, str(s.lua), 8, args.warmup)
            except Exception as exc:  # left out of the rounds; the others still run
                s.error = s.res["load_error"] = f"warm-up: {exc!r}"
                print(f"  ERROR {s.name} warm-up: {exc}", flush=True)
    rounds: list[dict[str, Any]] = []
    for conc in args.concs:
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        for _ in range(args.repeats):
            live = [s for s in servers if s.error is None]
            if not live:
                break
            first = len(rounds) % len(live)
            order = live[first:] + live[:first]
            rounds.append({"round": len(rounds), "conc": conc, "order": [s.name for s in order]})
            for pos, s in enumerate(order):
                try:
                    w = ps.wrk(s.url, str(s.lua), conc, args.duration)
                except Exception as exc:
                    s.error = s.res["load_error"] = f"c={conc} round {len(rounds) - 1}: {exc!r}"
                    print(f"  ERROR {s.name}: {exc}", flush=True)
                    continue
                w.update(round=len(rounds) - 1, position=pos)
                runs[s.name].append(w)
                print(
                    f"    c={conc:3d} round{len(rounds) - 1} {pos + 1}/{len(order)} {s.name:<17}"
                    f" {w['rps_ok']:8.1f} req/s  p50 {w['p50_us'] / 1000:7.2f} ms"
                    f"  p99 {w['p99_us'] / 1000:7.2f} ms  errors {w['errors']}",
                    flush=True,
                )
        for s in servers:
            if runs[s.name]:
                point = {"runs": runs[s.name], **summarize_runs(runs[s.name])}
                s.res.setdefault("wrk", {})[str(conc)] = point
    return rounds
