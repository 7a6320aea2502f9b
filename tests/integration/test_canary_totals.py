"""Canary analysis reads each variant's traffic back from the gateway's counters: one
endpoint with a canary (one replica each), driven over HTTP; the per-variant totals the
platform reports (API, SDK, CLI) match the requests sent, client errors apart."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

READY_TIMEOUT = 180.0
ENDPOINT = "traffic-api"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small LogisticRegression on the bundled breast-cancer data, as skops."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    model = LogisticRegression(max_iter=5000).fit(data.data, data.target)
    root = tmp_path_factory.mktemp("canary-totals-model")
    skops_io.dump(model, root / "model.skops")
    return {"path": root / "model.skops", "frame": data.data}


@pytest.fixture(scope="module")
def canaried(platform: LocalPlatform, trained: dict[str, Any]) -> Iterator[str]:
    """A project whose endpoint serves cancer:1 (main, 50 %) and cancer:2 (canary, 50 %)."""
    project = f"canary-{uuid.uuid4().hex[:8]}"
    with platform.client() as client:
        client.projects.create(project)
        for _ in range(2):
            client.models.push(
                trained["path"], "cancer", project=project, sample=trained["frame"].head(20)
            )
        client.endpoints.deploy(ENDPOINT, "cancer:1", replicas=1, project=project)
        client.endpoints.canary(ENDPOINT, "cancer:2", 50, replicas=1, project=project)
        try:
            client.endpoints.wait_ready(ENDPOINT, timeout=READY_TIMEOUT, project=project)
            yield project
        finally:
            pids = _replica_pids(client, ENDPOINT, project)
            try:
                client.endpoints.delete(ENDPOINT, project)
            except NotFound:
                pass
            _wait_gone(pids)


def _replica_pids(client: Client, name: str, project: str) -> set[int]:
    try:
        endpoint = client.endpoints.get(name, project)
    except NotFound:
        return set()
    return {r.pid for r in endpoint.status.replicas if r.pid}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pids: set[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), f"replicas still running: {pids}"


def grew(now: dict[str, float | None], before: dict[str, float | None], key: str) -> float:
    return (now[key] or 0) - (before.get(key) or 0)


def test_per_variant_totals_match_the_requests_sent(
    platform: LocalPlatform, admin: Client, canaried: str, trained: dict[str, Any], cli: Any
) -> None:
    project = canaried
    before = admin.endpoints.traffic(ENDPOINT, project=project)
    good = [[float(v) for v in trained["frame"].iloc[i].tolist()] for i in range(3)]
    sent: Counter[tuple[str, int]] = Counter()
    url = f"/inference/{project}/{ENDPOINT}/predict"
    headers = {"Authorization": f"Bearer {platform.api_key}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=30) as http:
        for i in range(60):
            rows = [[1.0, 2.0]] if i % 10 == 0 else good  # 6 rows that fit no signature
            answer = http.post(url, json={"instances": rows})
            assert answer.status_code in (200, 400), answer.text
            sent[answer.headers["x-stratus-variant"], answer.status_code] += 1
    assert sum(n for (_, status), n in sent.items() if status == 400) == 6
    assert {variant for variant, _ in sent} == {"main", "canary"}, sent  # 50 %: both, surely

    after = admin.endpoints.traffic(ENDPOINT, project=project)
    for variant in ("main", "canary"):
        figures, earlier = after[variant], before.get(variant, {})
        ok, bad = sent[variant, 200], sent[variant, 400]
        assert grew(figures, earlier, "requests") == ok + bad, (variant, sent)
        assert grew(figures, earlier, "client_errors") == bad
        assert figures["errors"] == 0
        p50, p95, p99 = figures["p50_ms"], figures["p95_ms"], figures["p99_ms"]
        assert p50 is not None and p95 is not None and p99 is not None
        assert 0 < p50 <= p95 <= p99 <= 10_000

    # the same figures as a table and as JSON, from the CLI
    table = cli("endpoints", "traffic", ENDPOINT, "-p", project)
    assert table.code == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:3] == ["VARIANT", "REQUESTS", "ERRORS"] and header[-3:] == ["P50", "P95", "P99"]
    cells = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert cells["canary"][1] == str(after["canary"]["requests"])
    as_json = cli("endpoints", "traffic", ENDPOINT, "-p", project, "-o", "json")
    assert as_json.code == 0 and '"client_errors"' in as_json.stdout

    with pytest.raises(NotFound):
        admin.endpoints.traffic("no-such-endpoint", project=project)
