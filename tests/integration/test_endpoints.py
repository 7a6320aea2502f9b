"""Serving endpoints end to end over HTTP, as a user drives them: deploy, the three inference
protocols, validation and auth on the gateway, a replica killed under load, rolling updates,
canaries, shadows, promote and rollback, crash loops, metrics, and re-adoption after the
control plane is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.errors import Conflict, ServiceUnavailable
from stratus.testing import LocalPlatform

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

PR_SET_CHILD_SUBREAPER = 36
READY_TIMEOUT = 90.0


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Iterator[None]:
    """Replicas outlive a killed control plane; as their subreaper we reap them (no zombies)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two LogisticRegressions that disagree on some rows, and a model that loads only while
    the file `switch` exists (it loads when pushed, then no longer: a push proves it loads)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    root = tmp_path_factory.mktemp("endpoint-models")
    paths = {}
    for name, c in (("v1", 1.0), ("v2", 0.001)):
        model = LogisticRegression(C=c, max_iter=5000).fit(data.data, data.target)
        paths[name] = root / name / "model.skops"
        paths[name].parent.mkdir()
        skops_io.dump(model, paths[name])
    broken = root / "broken"
    broken.mkdir()
    switch = root / "loadable"
    switch.touch()
    (broken / "predictor.py").write_text(
        "from pathlib import Path\n"
        "class Predictor:\n"
        "    def load(self, path):\n"
        f"        if not Path({str(switch)!r}).exists():\n"
        "            raise RuntimeError('the feature store it needs is gone')\n"
        "    def predict(self, batch):\n"
        "        return batch.matrix()[:, 0]\n"
    )
    return {"paths": paths, "broken": broken, "switch": switch, "frame": data.data}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Any]) -> Iterator[Served]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("endpoints-home"),
        env={"STRATUS_SERVING_MAX_REQUEST_BYTES": str(256 << 10)},
    )
    platform.start()
    try:
        frame = models["frame"]
        with platform.client() as client:
            client.models.push(models["paths"]["v1"], "cancer", sample=frame.head(20))
            client.models.push(models["paths"]["v2"], "cancer", sample=frame.head(20))
            client.models.push(models["broken"], "broken", sample=frame.head(20), trusted=True)
        models["switch"].unlink()
        served = Served(platform, frame)
        yield served
        served.http.close()
    finally:
        platform.stop()


class Served:
    def __init__(self, platform: LocalPlatform, frame: Any) -> None:
        self.platform = platform
        self.frame = frame
        self.headers = {"Authorization": f"Bearer {platform.api_key}"}
        self.http = httpx.Client(base_url=platform.url, headers=self.headers, timeout=30)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"/api/v1/projects/default/endpoints{path}", **kwargs)

    def deploy(self, name: str, model: str, replicas: int = 2) -> dict[str, Any]:
        body = {"name": name, "variants": [{"model": model, "replicas": replicas}]}
        response = self.api("POST", "", json=body)
        assert response.status_code == 201, response.text
        return self.wait(name, lambda e: e["status"]["phase"] == "ready")

    def wait(
        self, name: str, ok: Callable[[dict[str, Any]], bool], timeout: float = READY_TIMEOUT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            endpoint = self.api("GET", f"/{name}").json()
            if ok(endpoint):
                return endpoint
            if time.monotonic() > deadline:
                raise AssertionError(f"endpoint {name} never got there: {endpoint['status']}")
            time.sleep(0.1)

    def row(self, i: int = 0) -> list[float]:
        return [float(v) for v in self.frame.iloc[i].tolist()]

    def predict(
        self, name: str, rows: list[list[float]] | None = None, **kw: Any
    ) -> httpx.Response:
        body = {"instances": rows or [self.row()]}
        return self.http.post(f"/inference/default/{name}/predict", json=body, **kw)


def ready_pids(endpoint: dict[str, Any]) -> set[int]:
    return {r["pid"] for r in endpoint["status"]["replicas"] if r["phase"] == "ready"}


def all_ready(endpoint: dict[str, Any]) -> bool:
    status = endpoint["status"]
    return (
        status["phase"] == "ready"
        and status["observed_revision"] == endpoint["spec"]["revision"]
        and all(v["ready"] == v["desired"] == v["updated"] for v in status["variants"])
    )


class Load:
    """A bounded load loop in threads: counts statuses and answering versions."""

    def __init__(self, served: Served, name: str, threads: int = 3, seconds: float = 60.0):
        self.served, self.name = served, name
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        body = {"instances": [self.served.row()]}
        url = f"{self.served.platform.url}/inference/default/{self.name}/predict"
        with httpx.Client(headers=self.served.headers, timeout=30) as http:
            for _ in range(20_000):
                if self._stop.is_set() or time.monotonic() > self._deadline:
                    return
                try:
                    r = http.post(url, json=body)
                    status, version = r.status_code, r.headers.get("x-stratus-model-version", "")
                    text = r.text[:200]
                except httpx.HTTPError as exc:
                    status, version, text = 0, "", repr(exc)
                with self._lock:
                    self.statuses[status] += 1
                    self.versions[version] += 1
                    if status != 200:
                        self.failures.append(f"{status}: {text}")

    def explain(self) -> str:
        """The first failures, with what the platform's log says of each request id (a 500
        from the gateway names one; its traceback is in the log, not in the answer)."""
        log = self.served.platform.log_path.read_text(errors="replace").splitlines()
        parts = []
        for failure in self.failures[:5]:
            parts.append(failure)
            for request_id in set(re.findall(r"req-[0-9a-f]+", failure)):
                for i, line in enumerate(log):
                    if request_id in line:
                        parts.extend(log[i : i + 40])
                        break
        return "\n".join(parts)

    def answered(self, count: int) -> None:
        """Keep the load going until it has made `count` requests (however slow the machine)."""
        while True:
            with self._lock:
                made = sum(self.statuses.values())
            if made >= count:
                return
            assert time.monotonic() < self._deadline, f"only {made} requests in time"
            time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.3)
        self._stop.set()
        for t in self._threads:
            t.join()


def test_deploy_and_call_in_three_protocols(served: Served) -> None:
    endpoint = served.deploy("lr", "cancer:1")
    assert endpoint["spec"]["variants"][0]["version"] == 1
    assert endpoint["status"]["url"].endswith("/inference/default/lr")
    assert len(ready_pids(endpoint)) == 2
    for replica in endpoint["status"]["replicas"]:  # backend-neutral: where, and how reached
        assert replica["node"] and replica["address"].startswith("unix:///")
    # the replicas fetched the version from the store themselves, into the node's cache (one
    # copy for both); the control plane copied nothing
    home = served.platform.home
    assert not any((home / "cache" / "models").glob("*"))  # the push's load check cleaned up
    assert len(list((home / "cache" / "node" / "artifacts").iterdir())) == 1

    plain = served.predict("lr", [served.row(0), served.row(1)])
    assert plain.status_code == 200, plain.text
    assert len(plain.json()["predictions"]) == 2
    assert plain.headers["x-stratus-model-version"] == "cancer:1"
    assert plain.headers["x-stratus-variant"] == "main"
    assert plain.headers["x-request-id"].startswith("req-")

    traced = served.predict("lr", headers={"X-Request-Id": "trace-42"})
    assert traced.headers["x-request-id"] == "trace-42"

    records = served.frame.head(3).to_dict(orient="records")
    mlflow = served.http.post(
        "/inference/default/lr/invocations", json={"dataframe_records": records}
    )
    assert mlflow.status_code == 200, mlflow.text
    three = served.predict("lr", [served.row(0), served.row(1), served.row(2)])
    assert mlflow.json()["predictions"] == three.json()["predictions"]
    csv = served.frame.head(2).to_csv(index=False)
    as_csv = served.http.post(
        "/inference/default/lr/invocations", content=csv, headers={"Content-Type": "text/csv"}
    )
    assert as_csv.status_code == 200, as_csv.text
    assert len(as_csv.json()["predictions"]) == 2

    columns = list(served.frame.columns)
    v2_body = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [served.row()[i]]}
            for i, c in enumerate(columns)
        ]
    }
    v2 = served.http.post("/inference/default/lr/v2/models/lr/infer", json=v2_body)
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_name"] == "lr" and v2.json()["model_version"] == "1"
    assert v2.json()["outputs"][0]["data"] == plain.json()["predictions"][:1]

    root = served.http.post(
        "/v2/models/lr/infer", json=v2_body, headers={"X-Stratus-Project": "default"}
    )
    assert root.status_code == 200, root.text
    meta = served.http.get("/inference/default/lr/v2/models/lr")
    assert meta.status_code == 200 and [i["name"] for i in meta.json()["inputs"]] == columns
    assert served.http.get("/inference/default/lr/v2/health/ready").json()["ready"] is True
    assert httpx.get(f"{served.platform.url}/v2/health/live").status_code == 200


def test_an_onnx_model_behind_two_replicas(served: Served, tmp_path: Path) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    x = served.frame.to_numpy()
    y = (served.frame["mean radius"] > 14).astype(int).to_numpy()
    model = LogisticRegression(max_iter=5000).fit(x, y)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(skl2onnx.to_onnx(model, x[:1].astype("float32")).SerializeToString())
    with served.platform.client() as sdk:
        version = sdk.models.push(onnx_file, "cancer-onnx")
    assert version.flavor == "onnx"
    endpoint = served.deploy("onnx", "cancer-onnx", replicas=2)
    assert len(ready_pids(endpoint)) == 2
    rows = [served.row(i) for i in range(5)]
    expected = model.predict(x[:5]).tolist()
    plain = served.predict("onnx", rows)
    assert plain.status_code == 200, plain.text
    assert plain.json()["predictions"] == expected
    assert plain.headers["x-stratus-model-version"] == "cancer-onnx:1"
    mlflow = served.http.post("/inference/default/onnx/invocations", json={"instances": rows})
    assert mlflow.status_code == 200 and mlflow.json()["predictions"] == expected
    tensor = {"name": "X", "shape": [5, 30], "datatype": "FP32", "data": rows}
    v2 = served.http.post("/inference/default/onnx/v2/models/onnx/infer", json={"inputs": [tensor]})
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == expected, v2.json()

    # a wrong shape is the caller's mistake, told in the caller's terms: no server internals
    short = [row[:5] for row in rows[:2]]
    wrong = [
        served.predict("onnx", short),
        served.http.post(
            "/inference/default/onnx/v2/models/onnx/infer",
            json={"inputs": [{**tensor, "shape": [2, 5], "data": short}]},
        ),
    ]
    for answer, content_type, field in zip(
        wrong, ["application/problem+json", "application/json"], ["detail", "error"], strict=True
    ):  # v2 errors are that protocol's {"error": ...}
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == content_type
        detail = answer.json()[field]
        # the input, the shape its graph declares and the one received, in the caller's terms
        assert "input 'X': expected rows of shape [30], got rows of shape [5]" in detail, detail
        assert "Traceback" not in answer.text and ".py" not in answer.text, answer.text
        assert not re.search(r"(?<![\w:/])/[\w.-]+/", detail), detail  # no file paths
    assert served.api("DELETE", "/onnx").status_code == 204


def test_gateway_refuses_bad_requests_with_clear_errors(served: Served) -> None:
    served.wait("lr", all_ready)
    short = served.predict("lr", [served.row()[:5]])
    assert short.status_code == 400
    assert short.headers["content-type"] == "application/problem+json"
    assert "30" in short.json()["detail"] or "column" in short.json()["detail"]

    text = served.predict("lr", [["x"] * 30])
    assert text.status_code == 400, text.text

    broken_json = served.http.post(
        "/inference/default/lr/predict",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken_json.status_code == 400

    huge = served.predict("lr", [served.row()] * 3000)  # over the 256 KiB limit set above
    assert huge.status_code == 413 and "STRATUS_SERVING_MAX_REQUEST_BYTES" in huge.text

    assert served.http.get("/inference/default/lr/predict").status_code == 405
    missing = served.predict("nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert served.http.post("/inference/default/lr/v2/models/other/infer").status_code == 404
    no_key = httpx.post(
        f"{served.platform.url}/inference/default/lr/predict", json={"instances": []}
    )
    assert no_key.status_code == 401
    bad_key = httpx.post(
        f"{served.platform.url}/inference/default/lr/predict",
        json={"instances": [served.row()]},
        headers={"Authorization": "Bearer stk_0000000000000000_nope"},
    )
    assert bad_key.status_code == 401
    no_project = served.http.post("/v2/models/lr/infer", json={"inputs": []})
    assert no_project.status_code == 400 and "X-Stratus-Project" in no_project.text


def test_roles_projects_and_public_endpoints(served: Served) -> None:
    with served.platform.client() as admin:
        _roles(served, admin)


def _roles(served: Served, admin: Any) -> None:
    other = f"other-{uuid.uuid4().hex[:6]}"
    admin.projects.create(other)
    admin.service_accounts.create("caller", project="default", role="invoker")
    invoker = admin.service_accounts.create_key("caller", project="default").secret
    admin.service_accounts.create("outsider", project=other, role="owner")
    outsider = admin.service_accounts.create_key("outsider", project=other).secret

    url = f"{served.platform.url}/inference/default/lr/predict"
    body = {"instances": [served.row()]}
    as_invoker = httpx.post(url, json=body, headers={"Authorization": f"Bearer {invoker}"})
    assert as_invoker.status_code == 200, as_invoker.text
    manage = httpx.post(
        f"{served.platform.url}/api/v1/projects/default/endpoints",
        json={"name": "x", "variants": [{"model": "cancer:1"}]},
        headers={"Authorization": f"Bearer {invoker}"},
    )
    assert manage.status_code == 403
    foreign = httpx.post(url, json=body, headers={"Authorization": f"Bearer {outsider}"})
    assert foreign.status_code == 404 and "project 'default' not found" in foreign.text

    assert httpx.post(url, json=body).status_code == 401
    made_public = served.api("PATCH", "/lr", json={"public": True, "reason": "open data"})
    assert made_public.status_code == 200 and made_public.json()["spec"]["public"] is True
    assert httpx.post(url, json=body).status_code == 200
    served.api("PATCH", "/lr", json={"public": False})
    assert httpx.post(url, json=body).status_code == 401


def test_a_killed_replica_is_replaced_without_failed_requests(served: Served) -> None:
    before = served.wait("lr", all_ready)
    victim = sorted(ready_pids(before))[0]
    with Load(served, "lr", seconds=180) as load:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        after = served.wait("lr", lambda e: all_ready(e) and victim not in ready_pids(e))
        load.answered(60)  # a busy machine answers fewer per second: count, do not time
    assert load.failures == [], load.explain()
    assert load.statuses[200] > 50
    assert len(ready_pids(after)) == 2
    assert after["status"]["variants"][0]["restarts"] >= 1


def test_rolling_update_canary_promote_rollback(served: Served) -> None:
    served.wait("lr", all_ready)
    with Load(served, "lr") as load:
        changed = served.api(
            "PATCH",
            "/lr",
            json={"variants": [{"model": "cancer:2", "replicas": 2}], "reason": "retrained"},
        )
        assert changed.status_code == 200, changed.text
        served.wait("lr", lambda e: all_ready(e) and e["status"]["variants"][0]["version"] == 2)
    assert load.failures == [], load.explain()
    assert set(load.versions) <= {"cancer:1", "cancer:2"} and load.versions["cancer:2"] > 0
    assert served.predict("lr").headers["x-stratus-model-version"] == "cancer:2"

    canary = served.api("POST", "/lr/canary", json={"model": "cancer:1", "traffic": 10})
    assert canary.status_code == 200, canary.text
    spec = {v["name"]: v for v in canary.json()["spec"]["variants"]}
    assert spec["main"]["traffic"] == 90 and spec["canary"]["traffic"] == 10
    served.wait("lr", all_ready)
    seen = Counter(
        served.predict("lr").headers["x-stratus-variant"] for _ in range(300)
    )  # 10 % of 300: 30 expected
    assert 8 <= seen["canary"] <= 70, seen

    promoted = served.api("POST", "/lr/promote", json={"reason": "canary looks good"})
    assert promoted.status_code == 200, promoted.text
    assert [
        (v["name"], v["version"], v["traffic"]) for v in promoted.json()["spec"]["variants"]
    ] == [("main", 1, 100)]
    served.wait("lr", lambda e: all_ready(e) and e["status"]["variants"][0]["version"] == 1)
    assert served.predict("lr").headers["x-stratus-model-version"] == "cancer:1"

    rolled = served.api("POST", "/lr/rollback", json={"reason": "undo the promotion"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["spec"]["variants"][0]["version"] == 2  # the canary's revision
    assert len(rolled.json()["spec"]["variants"]) == 2
    again = served.api("POST", "/lr/rollback", json={"reason": "drop the canary"})
    assert [v["name"] for v in again.json()["spec"]["variants"]] == ["main"]
    served.wait("lr", all_ready)

    history = served.api("GET", "/lr/history").json()["items"]
    actions = [h["action"] for h in history]
    assert actions[:5] == ["rollback", "rollback", "promote", "canary", "update"]
    assert history[2]["reason"] == "canary looks good" and history[0]["actor"] == "user:admin"
    with served.platform.client() as admin:
        audit = admin.audit.list(project="default")
    audited = {e.action for e in audit}
    assert {"endpoints.canary", "endpoints.promote", "endpoints.rollback"} <= audited
    bad = served.api("POST", "/lr/rollback", json={"to_revision": 999})
    assert bad.status_code == 400


def test_shadow_gets_a_copy_and_metrics_keep_it(served: Served) -> None:
    shadowed = served.api("POST", "/lr/shadow", json={"model": "cancer:1", "replicas": 1})
    assert shadowed.status_code == 200, shadowed.text
    # the status of the spec before the shadow is not "ready" for the spec with it
    assert shadowed.json()["status"]["phase"] != "ready", shadowed.json()["status"]
    served.wait("lr", all_ready)  # ready means routable: every copy below reaches the shadow
    for _ in range(20):
        response = served.predict("lr")
        assert response.headers["x-stratus-variant"] == "main"
    deadline = time.monotonic() + 30
    while True:
        metrics = served.http.get("/metrics").text
        line = next(
            (
                x for x in metrics.splitlines()
                if x.startswith("stratus_inference_requests_total{") and 'variant="shadow"' in x
            ),
            None,
        )  # fmt: skip
        if line is not None and float(line.rsplit(" ", 1)[1]) >= 20:
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    skipped = [
        x for x in metrics.splitlines()
        if x.startswith("stratus_shadow_skipped_total{") and 'endpoint="lr"' in x
    ]  # fmt: skip
    assert all(float(x.rsplit(" ", 1)[1]) == 0 for x in skipped), skipped
    assert "stratus_inference_request_duration_seconds_bucket" in metrics
    assert "stratus_inference_batch_size_bucket" in metrics
    assert 'stratus_endpoint_replicas{endpoint="lr",phase="ready",project="default"' in metrics
    gone = served.api("DELETE", "/lr/variants/shadow", params={"reason": "enough"})
    assert [v["name"] for v in gone.json()["spec"]["variants"]] == ["main"]

    invoker_metrics = httpx.get(f"{served.platform.url}/metrics")
    assert invoker_metrics.status_code == 401


def test_a_model_that_cannot_load_is_a_failed_endpoint_with_logs(served: Served) -> None:
    created = served.api(
        "POST", "", json={"name": "bad", "variants": [{"model": "broken", "replicas": 1}]}
    )
    assert created.status_code == 201, created.text
    failed = served.wait("bad", lambda e: e["status"]["phase"] == "failed")
    message = failed["status"]["message"]
    assert "exited" in message and "code 3" in message, message
    assert failed["status"]["variants"][0]["restarts"] >= 3
    with served.platform.client() as sdk, pytest.raises(ServiceUnavailable, match="failed"):
        sdk.endpoints.wait_ready("bad", timeout=10)
    logs = served.api("GET", "/bad/logs").json()
    assert any("cannot start" in line for entry in logs for line in entry["lines"]), logs
    assert served.predict("bad").status_code == 503
    assert served.api("DELETE", "/bad").status_code == 204
    assert served.api("GET", "/bad").status_code == 404


def test_spec_errors_are_clear(served: Served) -> None:
    def create(body: dict[str, Any]) -> httpx.Response:
        return served.api("POST", "", json=body)

    assert create({"name": "x", "variants": [{"model": "nope"}]}).status_code == 404
    assert create({"name": "x", "variants": [{"model": "cancer:9"}]}).status_code == 404
    split = create(
        {"name": "x", "variants": [{"model": "cancer:1", "traffic": 50}]}
    )  # traffic must add up to 100
    assert split.status_code == 422 and "100" in split.text
    assert create({"name": "Bad_Name", "variants": [{"model": "cancer"}]}).status_code == 422
    assert create({"name": "lr", "variants": [{"model": "cancer"}]}).status_code == 409
    with served.platform.client() as admin, pytest.raises(Conflict, match="served by endpoint"):
        admin.models.delete_version("cancer:2")
    assert served.api("POST", "/lr/promote", json={}).status_code == 409


def test_a_restarted_control_plane_readopts_its_replicas(
    tmp_path: Path, models: dict[str, Any]
) -> None:
    platform = LocalPlatform(tmp_path / "home").start()
    pids: set[int] = set()
    try:
        with platform.client() as admin:
            admin.models.push(models["paths"]["v1"], "cancer", sample=models["frame"].head(5))
        served = Served(platform, models["frame"])
        pids = ready_pids(served.deploy("keep", "cancer:1", replicas=2))
        served.http.close()
        platform.kill()  # kill -9: replicas outlive it
        assert all(_alive(pid) for pid in pids)
        platform.start()
        served = Served(platform, models["frame"])
        adopted = served.wait("keep", all_ready)
        assert ready_pids(adopted) == pids  # the same processes, re-adopted
        assert served.predict("keep").status_code == 200
        served.http.close()
    finally:
        platform.stop()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "replicas outlived a clean stop"


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_up_demo_serves_a_model_at_once(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path / "home", extra_args=["--demo"]).start()
    pids: set[int] = set()
    try:
        with platform.client() as sdk:
            ready = sdk.endpoints.wait_ready("demo", timeout=60)
            pids = {r.pid for r in ready.status.replicas if r.pid}
            answer = sdk.endpoints.predict("demo", [[17.99, 10.38, 122.8, 1001.0] + [0.1] * 26])
            assert answer.model_version == "demo:1" and answer.predictions in ([0], [1])
            assert sdk.models.version("demo@production").metrics["accuracy"] > 0.9
        platform.stop()
        platform.start()  # seeding again leaves what is there
        with platform.client() as sdk:
            assert [v.version for v in sdk.models.versions("demo")] == [1]
            again = sdk.endpoints.wait_ready("demo", timeout=60)  # not the old status: new pids
            assert {r.pid for r in again.status.replicas}.isdisjoint(pids)
            pids |= {r.pid for r in again.status.replicas if r.pid}
        assert "already there" in platform.log_path.read_text()
    finally:
        platform.stop()
    assert not any(_alive(pid) for pid in pids)
