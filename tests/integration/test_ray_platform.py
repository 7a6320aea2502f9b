"""Stratus on a real Ray cluster (a head and two workers on loopback addresses) with an s3://
store (moto), end to end as a user drives it: an endpoint's two replicas run on the two workers
and serve through the gateway over mutual TLS; losing a worker under load fails no request and
the endpoint is back to two ready replicas on the surviving worker; a training job whose node
is lost is queued again, runs again and resumes from its checkpoint.

The platform's replicas and jobs ask Ray for CPUs only (`compute.ray` has no custom resources),
so each test first fills the head's CPU with an actor of its own: what the platform runs can
only land on the workers, where the test can lose it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.client import Client
from stratus.compute.addresses import parse_address
from stratus.endpoints.schemas import EndpointRead
from stratus.jobs.schemas import JobPhase, JobRead
from stratus.serving.replica_tls import identities, replica_identity
from stratus.serving.wire import HELLO_ID, Kind, encode_request
from stratus.testing import LocalPlatform, wait_for

pytest.importorskip("ray")
pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

pytestmark = pytest.mark.ray

READY_TIMEOUT = 120.0  # a Ray replica starts in ~1.5 s on a quiet machine (forked)
RECOVERY_DEADLINE = 60.0  # from losing a worker to two ready replicas again (~10 s wanted)
JOB_TIMEOUT = 150.0
HOLD = "hold-head-cpu"
JOB_TYPE = "ray.half"  # an instance type that fits beside two replicas on one worker
STEPS = 40

# Drivers in subprocesses, so that this process never calls ray.init.
# Fill the head's one CPU with a detached actor: the platform's workloads go to the workers.
HOLD_HEAD = textwrap.dedent(
    """
    import sys
    import ray

    address, namespace, head, name = sys.argv[1:5]
    ray.init(address=address, namespace=namespace, log_to_driver=False)

    @ray.remote
    class Hold:
        def ready(self):
            return ray.util.get_node_ip_address()

    hold = Hold.options(name=name, lifetime="detached", num_cpus=1,
                        resources={f"node:{head}": 0.001}).remote()
    print(ray.get(hold.ready.remote(), timeout=120))
    """
)

# Kill the hold (when given), then print the live named actors of a namespace.
RELEASE_AND_LIST = textwrap.dedent(
    """
    import json, sys
    import ray

    address, namespace, hold_namespace, name = sys.argv[1:5]
    ray.init(address=address, namespace=hold_namespace, log_to_driver=False)
    if name:
        try:
            ray.kill(ray.get_actor(name, namespace=hold_namespace), no_restart=True)
        except ValueError:
            pass
    left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == namespace]
    print(json.dumps(sorted(left)))
    """
)

# A training job's code: reads its dataset, counts with a checkpoint at every step, logs the
# result to its tracking run. A resumed attempt ends with the same result as one that never
# stopped.
COUNTER = textwrap.dedent(
    """
    import csv, os, sys, time
    from pathlib import Path
    from stratus import training
    import stratus.tracking as tracking

    steps, pause = int(sys.argv[1]), float(sys.argv[2])
    data = Path(os.environ["STRATUS_DATA_DIR"])
    rows = 0
    for path in sorted(data.rglob("*.csv")):
        with open(path, newline="") as f:
            rows += sum(1 for _ in csv.DictReader(f))
    ckpt = training.checkpoint()
    state = ckpt.state or {"step": 0, "value": 1}
    attempt = os.environ["STRATUS_JOB_ATTEMPT"]
    print(f"attempt {attempt} starts at step {state['step']} with {rows} rows", flush=True)
    with tracking.start_run() as run:
        for step in range(state["step"], steps):
            state["value"] = (state["value"] * 31 + step + rows) % 1_000_003
            state["step"] = step + 1
            time.sleep(pause)
            ckpt.save(state)
        run.log_metric("result", state["value"])
    print(f"result {state['value']}", flush=True)
    """
)
ROWS = 25


def expected_value(steps: int, rows: int) -> int:
    value = 1
    for step in range(steps):
        value = (value * 31 + step + rows) % 1_000_003
    return value


def ray_driver(cluster: Any, script: str, *args: str) -> str:
    """Run `script` as a Ray driver in a subprocess; its last line of output."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@dataclass
class RayPlatform:
    platform: LocalPlatform
    cluster: Any
    namespace: str
    client: Client


@pytest.fixture
def ray_platform(ray_cluster: Any, s3_server: Any, tmp_path: Path) -> Iterator[RayPlatform]:
    """A platform on the Ray cluster (a namespace of this test's own) with an s3:// store;
    afterwards: stopped, no actor of its namespace left, the head's CPU released, both workers
    alive."""
    namespace = f"it-platform-{uuid.uuid4().hex[:8]}"
    hold_namespace = f"{namespace}-hold"
    bucket = f"stratus-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    home = tmp_path / "home"
    home.mkdir()
    (home / "instance_types.yaml").write_text(
        "instance_types:\n"
        f"  - name: {JOB_TYPE}\n"
        "    vcpus: 0.5\n"
        "    memory_gib: 1\n"
        "    price_per_hour: 0.02\n"
        "    spot_price_per_hour: 0.01\n"
    )
    held = ray_driver(ray_cluster, HOLD_HEAD, ray_cluster.address, hold_namespace,
                      ray_cluster.head_ip, HOLD)  # fmt: skip
    assert held == ray_cluster.head_ip
    platform = LocalPlatform(
        home,
        env={
            **ray_cluster.env,
            **s3_server.env,
            "STRATUS_COMPUTE_BACKEND": "ray",
            "STRATUS_COMPUTE_RAY": json.dumps(
                {"address": ray_cluster.address, "namespace": namespace}
            ),
            "STRATUS_STORE_URL": f"s3://{bucket}/stratus",
            "STRATUS_STORE_S3_ENDPOINT_URL": s3_server.endpoint,
        },
    )
    try:
        platform.start(timeout=120)
        with platform.client() as client:
            yield RayPlatform(platform, ray_cluster, namespace, client)
    finally:
        platform.stop(timeout=60)
        for ip in ray_cluster.worker_ips:  # leave the session's cluster whole
            if ip not in ray_cluster.nodes:
                ray_cluster.add_node(ip)
        left = json.loads(
            ray_driver(
                ray_cluster, RELEASE_AND_LIST, ray_cluster.address, namespace, hold_namespace, HOLD
            )
        )
        # what the replicas and jobs kept on their nodes (all nodes are this machine)
        shutil.rmtree(Path(tempfile.gettempdir()) / "stratus-ray" / namespace, ignore_errors=True)
    assert left == [], f"actors of {namespace} left after the platform stopped: {left}"


# --- an endpoint -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("ray-platform-model")
    skops_io.dump(LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]), folder / "m.skops")
    return folder


ROW = [0.0, 1.0]  # class 0


def ready_replicas(endpoint: EndpointRead) -> list[Any]:
    return [r for r in endpoint.status.replicas if r.phase == "ready"]


def answer_of(conn: socket.socket) -> bytes:
    """What a replica sends to a client that presents a (wrong) secret before it hangs up."""
    conn.settimeout(10)
    conn.sendall(encode_request(HELLO_ID, Kind.AUTH, "", b"x" * 64))
    got = b""
    try:
        while chunk := conn.recv(4096):
            got += chunk
    except (ssl.SSLError, ConnectionError):  # TLS 1.3: the client's certificate judged late
        pass
    return got


def assert_mutual_tls(home: Path, replica: Any) -> None:
    """The replica's port speaks TLS 1.3 with a certificate of the platform's replica CA for
    the replica's id, hangs up on a plain client and on one without the gateway's certificate,
    and still wants its secret from one with it."""
    where = parse_address(replica.address)
    trusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trusting.check_hostname = False  # who it is: the id its certificate names
    trusting.load_verify_locations(home / "tls" / "replica-ca.pem")
    with trusting.wrap_socket(socket.create_connection((where.host, where.port), 10)) as tls:
        assert identities(tls.getpeercert()) == [replica_identity(replica.id)]
        assert tls.version() == "TLSv1.3"
        assert answer_of(tls) == b""  # no client certificate: refused
    with socket.create_connection((where.host, where.port), 10) as plain:
        assert answer_of(plain)[:1] in (b"", b"\x15")  # nothing, or a TLS alert
    trusting.load_cert_chain(home / "tls" / "replica-gateway.pem",
                             home / "tls" / "replica-gateway-key.pem")  # fmt: skip
    with trusting.wrap_socket(socket.create_connection((where.host, where.port), 10)) as tls:
        assert answer_of(tls) == b""  # the gateway's certificate, a wrong secret: refused


class Load:
    """A bounded load loop in threads through the gateway: counts statuses, keeps failures."""

    def __init__(self, url: str, api_key: str, threads: int = 2, seconds: float = 150.0):
        self.url, self.headers = url, {"Authorization": f"Bearer {api_key}"}
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=30) as http:
            for _ in range(50_000):
                if self._stop.is_set() or time.monotonic() > self._deadline:
                    return
                try:
                    r = http.post(self.url, json={"instances": [ROW]})
                    status, text = r.status_code, r.text[:300]
                except httpx.HTTPError as exc:
                    status, text = 0, repr(exc)
                with self._lock:
                    self.statuses[status] += 1
                    if status != 200:
                        self.failures.append(f"{status}: {text}")

    def made(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def answered(self, count: int) -> None:
        """Keep the load going until it has made `count` requests in all."""
        left = max(0.0, self._deadline - time.monotonic())
        wait_for(f"{count} requests", lambda: self.made() >= count, left, 0.05)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def test_an_endpoint_on_two_workers_survives_losing_one_under_load(
    ray_platform: RayPlatform, tiny_model_dir: Path
) -> None:
    client, cluster = ray_platform.client, ray_platform.cluster
    client.models.push(tiny_model_dir, "tiny", flavor="sklearn", sample=[ROW, [1.0, 0.0]])
    client.endpoints.create("tiny", [{"name": "main", "model": "tiny:1", "replicas": 2}])
    endpoint = client.endpoints.wait_ready("tiny", timeout=READY_TIMEOUT)

    # the two replicas run on the two workers and listen there, on TCP
    replicas = ready_replicas(endpoint)
    assert sorted(r.node for r in replicas) == sorted(cluster.worker_ips)
    for replica in replicas:
        assert replica.address.startswith(f"tcp://{replica.node}:"), replica.address
        assert replica.pid is None  # the local backend's only
        assert_mutual_tls(ray_platform.platform.home, replica)
    assert client.endpoints.predict("tiny", [ROW, [1.0, 0.0]]).predictions == [0, 1]

    lost, survivor = cluster.worker_ips[-1], cluster.worker_ips[0]
    url = f"{ray_platform.platform.url}/inference/default/tiny/predict"
    try:
        with Load(url, ray_platform.platform.api_key) as load:
            load.answered(50)
            before = load.made()
            started = time.monotonic()
            cluster.kill_node(lost)

            timeline: dict[tuple[str, str], float] = {}  # (replica, phase) -> first seen

            def back_to_two() -> EndpointRead | None:
                now = client.endpoints.get("tiny")
                for r in now.status.replicas:
                    timeline.setdefault((r.id, r.phase), time.monotonic() - started)
                ready = ready_replicas(now)
                on_survivor = [r for r in ready if r.node == survivor]
                return now if len(ready) == len(on_survivor) == 2 else None

            recovered = wait_for(
                "two ready replicas on the surviving worker", back_to_two, RECOVERY_DEADLINE, 0.1
            )
            seconds = time.monotonic() - started
            load.answered(load.made() + 50)  # and it keeps serving on the two of them
        after = load.made() - before
        seen = ", ".join(
            f"{r.rsplit('.', 1)[-1]} {p} {t:.1f} s"
            for (r, p), t in sorted(timeline.items(), key=lambda item: item[1])
        )
        print(
            f"\n[ray] lost worker {lost}: two ready replicas again on {survivor} after "
            f"{seconds:.1f} s; {load.made()} requests ({after} from the loss on), "
            f"statuses {dict(load.statuses)}, {len(load.failures)} failed\n"
            f"[ray] replicas seen after the loss (first look at each phase): {seen}"
        )
        assert load.failures == [], load.failures[:5]
        assert load.statuses[200] == load.made()
        for replica in ready_replicas(recovered):
            assert replica.address.startswith(f"tcp://{survivor}:"), replica.address
        assert client.endpoints.predict("tiny", [ROW]).predictions == [0]
    finally:
        if lost not in cluster.nodes:
            cluster.add_node(lost)


# --- a training job --------------------------------------------------------------------------


def job_node(cluster: Any, uid: str) -> str | None:
    """The worker whose Ray node runs the job's runner (found in /proc by its spec file, and
    its node by the session it runs in: each node is a session of its own)."""
    marker = f"/jobs/{uid}/runner.json"
    sessions = {node.pid: ip for ip, node in cluster.nodes.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if "stratus.training.runner" in cmdline and marker in cmdline:
                return sessions.get(os.getsid(int(entry.name)))
        except OSError:
            continue
    return None


def test_a_job_whose_node_is_lost_resumes_from_its_checkpoint(
    ray_platform: RayPlatform, tmp_path: Path
) -> None:
    client, cluster = ray_platform.client, ray_platform.cluster
    data = tmp_path / "data"
    data.mkdir()
    (data / "points.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(ROWS)))
    dataset = client.datasets.push(data / "points.csv", "points")
    code = tmp_path / "code"
    code.mkdir()
    (code / "count.py").write_text(COUNTER)

    job = client.jobs.run(
        code=code,
        entrypoint="count.py",
        args=[str(STEPS), "0.25"],
        dataset=f"points:{dataset.version}",
        instance_type=JOB_TYPE,
    )
    name, uid = job.metadata.name, job.metadata.uid

    def checkpointed() -> JobRead | None:
        now = client.jobs.get(name)
        assert not now.status.phase.finished, now.status.message
        step = now.status.checkpoint.step if now.status.checkpoint else None
        return now if step is not None and step >= 3 else None

    wait_for("a checkpoint at step 3", checkpointed, JOB_TIMEOUT, 0.2)
    node = wait_for("the job's node", lambda: job_node(cluster, uid), 30, 0.2)
    assert node in cluster.worker_ips
    assert client.jobs.get(name).status.node == node  # what the API says is where it runs
    try:
        started = time.monotonic()
        cluster.kill_node(node)

        def requeued() -> JobRead | None:
            now = client.jobs.get(name)
            assert not now.status.phase.finished, now.status.message
            return now if now.status.preemptions == 1 else None

        seen = wait_for("the job queued again", requeued, 60, 0.05)
        print(
            f"\n[ray] job {name} lost with {node}: preempted after "
            f"{time.monotonic() - started:.1f} s ({seen.status.phase}: {seen.status.message!r})"
        )
        assert seen.status.phase in (JobPhase.queued, JobPhase.running)
        if seen.status.phase == JobPhase.queued:
            assert seen.status.message == (
                "its node was lost; queued to resume from its last checkpoint"
            )
        else:  # queued and started again between two looks
            assert "resuming from checkpoint step" in seen.status.message
        done = client.jobs.wait(name, timeout=JOB_TIMEOUT)
        print(f"[ray] job {name} {done.status.phase} {time.monotonic() - started:.1f} s after")
        assert done.status.phase == JobPhase.succeeded, done.status.message
        assert done.status.node is None  # it runs nowhere now
        assert (done.status.attempts, done.status.preemptions) == (2, 1)
        assert done.status.metrics["result"] == expected_value(STEPS, ROWS)
        text = b"".join(client.jobs.logs(name)).decode()
        assert f"attempt 1 starts at step 0 with {ROWS} rows" in text
        resumed = int(text.split("attempt 2 starts at step ")[1].split()[0])
        assert 3 <= resumed < STEPS, text  # it did not start over
        assert "resumed from the last checkpoint" in text
    finally:
        if node not in cluster.nodes:
            cluster.add_node(node)


def test_a_batch_prediction_runs_as_a_job_on_a_ray_worker(
    ray_platform: RayPlatform, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Batch inference goes through the compute seam like any job: on a Ray worker it pulls the
    input and the model, and commits the predictions as a version with its lineage."""
    client = ray_platform.client
    rows = 3000
    (tmp_path / "pairs.csv").write_text(
        "id,a,b\n" + "".join(f"r{i},{i % 2},{(i + 1) % 2}\n" for i in range(rows))
    )
    data = client.datasets.push(tmp_path / "pairs.csv", "pairs")
    model = client.models.push(tiny_model_dir, "pairs-model", sample=[{"a": 0.0, "b": 1.0}])
    job = client.batch.predict(
        f"pairs-model:{model.version}",
        dataset=f"pairs:{data.version}",
        output_dataset="pairs-scores",
        batch_rows=1000,
        instance_type=JOB_TYPE,
        timeout=JOB_TIMEOUT,
    )
    assert job.status.phase == JobPhase.succeeded, job.status.message
    output = client.datasets.version(str(job.status.dataset_version))
    assert output.rows == rows and [c.name for c in output.columns][-1] == "prediction"
    assert output.lineage is not None
    assert output.lineage.model_version == f"pairs-model:{model.version}"
    assert output.lineage.dataset_version == f"pairs:{data.version}"
    pulled = client.datasets.pull(str(job.status.dataset_version), tmp_path / "out")
    import pandas as pd

    frame = pd.concat(pd.read_parquet(p) for p in sorted(pulled.glob("*.parquet")))
    assert frame["prediction"].tolist() == [i % 2 for i in range(rows)]  # (a, b) → class
