"""Autoscaling end to end on a real control plane: an endpoint at min 0 starts with no replica,
answers its first request from zero (held at the gateway, `X-Stratus-Cold-Start: true`),
scales out under a burst, back to zero when idle, with no failed request; every step is an
endpoint event, and the desired count is on /metrics."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.endpoints.schemas import EndpointRead
from stratus.testing import LocalPlatform, wait_for

pytest.importorskip("sklearn")
pytest.importorskip("skops.io")

ROW = [0.0, 1.0]
SCALING = {
    "min_replicas": 0,
    "max_replicas": 3,
    "target_concurrency": 1,
    "scale_to_zero_after_seconds": 3,
    "stable_window_seconds": 4,
    "panic_window_seconds": 2,
    "scale_down_delay_seconds": 1,
}


def live(endpoint: EndpointRead) -> list[Any]:
    return [r for r in endpoint.status.replicas if r.phase in ("starting", "ready")]


def test_an_endpoint_at_min_zero_answers_from_zero_scales_out_and_back_to_zero(
    platform: LocalPlatform, admin: Client, tiny_model: Path
) -> None:
    name = f"auto-{uuid.uuid4().hex[:8]}"
    admin.models.push(tiny_model, name, sample=[ROW, [1.0, 0.0]])
    admin.endpoints.create(name, [{"name": "main", "model": f"{name}:1", "autoscaling": SCALING}])
    try:
        idle = wait_for(
            "the endpoint ready at zero replicas",
            lambda: (e := admin.endpoints.get(name)).status.phase == "ready" and e,
            60,
            0.1,
        )
        assert live(idle) == [] and idle.status.variants[0].desired == 0

        url = f"{platform.url}/inference/default/{name}/predict"
        headers = {"Authorization": f"Bearer {platform.api_key}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            started = time.monotonic()
            first = http.post(url, json={"instances": [ROW]})
            waited = time.monotonic() - started
            assert first.status_code == 200, first.text
            assert first.json()["predictions"] == [0]
            assert first.headers["x-stratus-cold-start"] == "true"
            print(f"\n[autoscaling] first request from zero answered in {waited:.2f} s")

            # a burst: six callers at once, until the variant has its maximum
            statuses: Counter[int] = Counter()
            stop = threading.Event()
            lock = threading.Lock()

            def call() -> None:
                with httpx.Client(headers=headers, timeout=60) as mine:
                    for _ in range(20_000):
                        if stop.is_set():
                            return
                        status = mine.post(url, json={"instances": [ROW]}).status_code
                        with lock:
                            statuses[status] += 1

            callers = [threading.Thread(target=call) for _ in range(6)]
            for caller in callers:
                caller.start()
            try:
                wait_for(
                    "three ready replicas under the burst",
                    lambda: (
                        sum(r.phase == "ready" for r in admin.endpoints.get(name).status.replicas)
                        == 3
                    ),
                    60,
                    0.1,
                )
            finally:
                stop.set()
                for caller in callers:
                    caller.join(60)
            assert set(statuses) == {200}, statuses

            # idle: back to zero replicas
            back = wait_for(
                "the endpoint back at zero replicas",
                lambda: live(e := admin.endpoints.get(name)) == [] and e,
                90,
                0.2,
            )
            assert back.status.variants[0].desired == 0 and back.status.phase == "ready"

            # a new connection: the pooled one has idled past the server's keep-alive
            metrics = httpx.get(f"{platform.url}/metrics", headers=headers, timeout=60).text
        labels = f'endpoint="{name}",project="default"'  # as /metrics sorts them
        assert f'stratus_endpoint_desired_replicas{{{labels},variant="main"}} 0.0' in metrics
        assert f"stratus_inference_cold_start_wait_seconds_count{{{labels}}}" in metrics

        events = admin.endpoints.events(name)
        steps = [(e.from_replicas, e.to_replicas) for e in reversed(events)]  # oldest first
        assert steps[0] == (0, 1), steps
        assert "requests waiting at zero replicas" in events[-1].reason
        assert max(to for _, to in steps) == 3
        assert steps[-1][1] == 0 and "scale to zero" in events[0].reason
        assert all(e.kind == "scaled" and e.variant == "main" for e in events)
        # scaling never made a new revision of the endpoint
        assert admin.endpoints.get(name).spec.revision == 1
    finally:
        admin.endpoints.delete(name)
