"""The serving benchmark's handle on a throwaway Stratus platform (`StratusRun`): started
with stratus.testing.LocalPlatform (locally or on a Ray cluster), models pushed, endpoints
deployed, scaled and deleted through the API, the PSS of its replicas, fork servers and
control plane read apart, and every process it ran stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from serving_config import POLL_S, PROJECT, shared_module
from serving_models import BenchModel
from serving_procs import (
    Cleanup,
    alive,
    kill_pids,
    no_interrupts,
    parent_pid,
    pss_mb,
    rss_mb,
    start_ticks,
    wait_idle,
)


class NotLanded(RuntimeError):
    pass


class StratusRun:
    """A throwaway platform: push, deploy, measure, delete; everything stopped by PID."""

    def __init__(self, args: argparse.Namespace, cleanup: Cleanup, cluster: Any = None) -> None:
        import httpx

        from stratus.testing import LocalPlatform

        self.args = args
        self.cluster = cluster  # a RayCluster (tests/ray_cluster.py): the Ray backend on it
        self.home = args.work / ("stratus-home-ray" if cluster else "stratus-home")
        # `stratus up` warms its replica fork server at start; LocalPlatform turns that off
        # (tests) unless told: measure the platform as users run it, unless --no-prewarm
        prewarm = "false" if args.no_prewarm else "true"
        env = {"STRATUS_SERVING_PREWARM": prewarm}
        self.namespace = f"bench-{os.getpid()}"
        if cluster is not None:
            # replicas on the two workers (the custom resource only they have), not the head
            ray = {"address": cluster.address, "namespace": self.namespace,
                   "resources": {"worker_node": 0.01}}  # fmt: skip
            env.update(cluster.env)
            env.update(STRATUS_COMPUTE_BACKEND="ray", STRATUS_COMPUTE_RAY=json.dumps(ray))
        self.replica_ids: dict[str, set[str]] = {}  # endpoint -> ids of its replicas (Ray)
        self.platform = LocalPlatform(self.home, env=env)
        self.base = f"/api/v1/projects/{PROJECT}/endpoints"
        self.seen: dict[int, int | None] = {}  # every pid of the platform's processes we saw
        self.replicas: dict[str, dict[int, int | None]] = {}  # endpoint -> its replicas' pids
        self.http: httpx.Client | None = None
        self.stop_now = cleanup.push("stratus platform", self.stop)
        t0 = time.perf_counter()
        self.platform.start(timeout=args.start_timeout)
        self.start_s = time.perf_counter() - t0
        self.watch_tree()
        # the control plane pre-warms its fork server (imports numpy, sklearn...) in the
        # background: deploys are timed against a settled platform, as users meet it
        # (with --no-prewarm the first deploy starts the fork server and pays for it)
        ps = shared_module("peers_serving")
        self.settle_s = wait_idle(lambda: ps.tree(self.platform.pid), args.start_timeout)
        self.http = httpx.Client(
            base_url=self.platform.url,
            headers={"Authorization": f"Bearer {self.platform.api_key}"},
            timeout=30.0,
        )
        probe = self.http.get(self.base)
        if probe.status_code == 404:
            with no_interrupts():
                self.stop_now()
            raise NotLanded(f"GET {self.base} -> 404: the endpoints API is not served yet")

    @property
    def api(self) -> Any:
        assert self.http is not None
        return self.http

    # -- processes

    def watch(self, pids: dict[int, int | None] | list[int] | set[int]) -> None:
        for pid in pids:
            if pid not in self.seen:
                given = pids.get(pid) if isinstance(pids, dict) else None
                self.seen[pid] = given if given is not None else start_ticks(pid)

    def watch_tree(self) -> None:
        """The platform's process tree, and the replicas its local backend recorded."""
        if self.platform.process is not None:
            self.watch(shared_module("peers_serving").tree(self.platform.process.pid))
        for record in self.home.rglob("replicas/*.json"):
            if record.name.endswith(".spec.json"):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(record.read_text())
                ticks = data.get("process_start_ticks")
                self.watch({int(data["pid"]): int(ticks) if ticks is not None else None})

    def wait_gone(self, pids: dict[int, int | None], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while any(alive(p, t) for p, t in pids.items()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Delete our endpoints, stop the platform, then stop whatever of it is left (the
        replicas and their fork server outlive the control plane by design)."""
        with contextlib.suppress(Exception):
            self.watch_tree()
        if self.http is not None:
            if self.platform.process is not None:
                for name in list(self.replicas):
                    with contextlib.suppress(Exception):
                        self.http.delete(f"{self.base}/{name}", timeout=5.0)
                every = {p: t for reps in self.replicas.values() for p, t in reps.items()}
                self.wait_gone(every, 10.0)
            self.http.close()
        with contextlib.suppress(Exception):
            self.watch_tree()
        self.platform.stop()
        kill_pids(self.seen)

    # -- API

    def push(self, m: BenchModel, X: Any) -> str:
        import pandas as pd
        import skops.io
        from sklearn.datasets import load_breast_cancer

        folder = self.args.work / "stratus-models" / m.name
        folder.mkdir(parents=True, exist_ok=True)
        skops.io.dump(m.estimator, folder / "model.skops")
        columns = [str(c) for c in load_breast_cancer().feature_names]
        sample = pd.DataFrame(X[:20], columns=columns)
        with self.platform.client() as client:
            version = client.models.push(folder, f"bench-{m.name}", project=PROJECT, sample=sample)
        return f"bench-{m.name}:{version.version}"

    @staticmethod
    def spec(model_ref: str, replicas: int) -> list[dict[str, Any]]:
        return [{"name": "main", "model": model_ref, "replicas": replicas, "traffic": 100}]

    def get(self, name: str) -> dict[str, Any]:
        r = self.api.get(f"{self.base}/{name}")
        if r.status_code != 200:
            raise RuntimeError(f"GET {self.base}/{name} -> {r.status_code}: {r.text[:500]}")
        data: dict[str, Any] = r.json()
        return data

    def wait_ready(self, name: str, replicas: int) -> dict[str, Any]:
        """Until the endpoint is `ready` with exactly `replicas` ready replicas and no others."""
        deadline = time.monotonic() + self.args.start_timeout
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = self.get(name)
            status = data.get("status", {})
            reps = [r for r in status.get("replicas", []) if r.get("phase") != "exited"]
            pids = {int(r["pid"]): start_ticks(int(r["pid"])) for r in reps if r.get("pid")}
            self.watch(pids)
            known = self.replicas.setdefault(name, {})
            known.update({p: t for p, t in pids.items() if p not in known})
            self.replica_ids.setdefault(name, set()).update(r["id"] for r in reps)
            if (
                status.get("phase") == "ready"
                and len(reps) == replicas
                and all(r.get("phase") == "ready" and (r.get("pid") or self.cluster) for r in reps)
            ):
                return data
            time.sleep(0.05)
        raise TimeoutError(
            f"{name} not ready with {replicas} replicas in {self.args.start_timeout}s: "
            f"{json.dumps(data.get('status', {}))[:1500]}\n{self.platform.log_tail(15)}"
        )

    @staticmethod
    def predict_path(name: str) -> str:
        return f"/inference/{PROJECT}/{name}/predict"

    def deploy(self, name: str, model_ref: str, body: bytes) -> dict[str, Any]:
        """Create a 1-replica endpoint; the time from that POST to the first 200 of predict."""
        import httpx

        payload = {"name": name, "variants": self.spec(model_ref, 1)}
        self.replicas.setdefault(name, {})
        t0 = time.perf_counter()
        r = self.api.post(self.base, json=payload)
        post_s = time.perf_counter() - t0
        if r.status_code >= 300:
            raise RuntimeError(f"POST {self.base} -> {r.status_code}: {r.text[:500]}")
        last = ""
        first: bytes | None = None
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() - t0 < self.args.start_timeout:
            try:
                resp = self.api.post(
                    self.predict_path(name), content=body, headers=headers, timeout=2.0
                )
                if resp.status_code == 200:
                    first = resp.content
                    break
                last = f"{resp.status_code} {resp.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(POLL_S)
        cold = time.perf_counter() - t0
        if first is None:
            raise TimeoutError(f"{name}: no 200 from predict in {cold:.0f}s (last: {last})")
        return {"cold_s": cold, "post_s": post_s, "first": first.decode(errors="replace")[:200]}

    def scale(self, name: str, model_ref: str, replicas: int) -> float:
        """PATCH the variant's replicas; seconds until the endpoint is ready with them."""
        t0 = time.perf_counter()
        body = {"variants": self.spec(model_ref, replicas)}
        r = self.api.patch(f"{self.base}/{name}", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"PATCH {self.base}/{name} -> {r.status_code}: {r.text[:500]}")
        self.wait_ready(name, replicas)
        return time.perf_counter() - t0

    def delete(self, name: str) -> None:
        """DELETE the endpoint and wait (15 s at most) until its replicas have exited."""
        r = self.api.delete(f"{self.base}/{name}")
        if r.status_code >= 300 and r.status_code != 404:
            raise RuntimeError(f"DELETE {self.base}/{name} -> {r.status_code}: {r.text[:300]}")
        if self.cluster is not None:
            folders = {self.replica_folder(i) for i in self.replica_ids.get(name, set())}
            deadline = time.monotonic() + 15.0
            while set(self.ray_replica_pids()) & folders and time.monotonic() < deadline:
                time.sleep(0.05)
            gone = not set(self.ray_replica_pids()) & folders
        else:
            gone = self.wait_gone(self.replicas.get(name, {}), 15.0)
        if not gone:
            print(f"  WARNING: replicas of {name} still running 15 s after DELETE", flush=True)
        self.replicas.pop(name, None)
        self.replica_ids.pop(name, None)

    # -- the Ray backend's processes (its nodes are processes of this machine)

    def replica_folder(self, replica_id: str) -> Path:
        nodes = Path(tempfile.gettempdir()) / "stratus-ray"  # the Ray backend's default
        return nodes / self.namespace / "replicas" / replica_id

    def ray_replica_pids(self) -> dict[Path, list[int]]:
        """Replica folder -> the processes working in it (a replica and its log writer)."""
        found: dict[Path, list[int]] = {}
        for pid in self.cluster_pids():
            with contextlib.suppress(OSError):
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
                if cwd.parent.name == "replicas" and cwd.parent.parent.name == self.namespace:
                    found.setdefault(cwd, []).append(pid)
        return found

    def cluster_pids(self) -> set[int]:
        assert self.cluster is not None
        return {p for node in self.cluster.nodes.values() for p in node.pids()}

    def ray_memory(self) -> dict[str, Any]:
        """PSS of the replicas (with their log writers), of the actors that hold them, of the
        nodes' fork servers, of the rest of the cluster and of the control plane, apart."""
        every = self.cluster_pids()
        replicas = self.ray_replica_pids()
        in_replicas = {p for pids in replicas.values() for p in pids}

        def cmdline(pid: int) -> str:
            with contextlib.suppress(OSError):
                return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            return ""

        actors = {p for p in every - in_replicas if "_OnRayNode" in cmdline(p)}
        forks = {p for p in every - in_replicas if "node_forker" in cmdline(p)}
        control = shared_module("peers_serving").tree(self.platform.pid)
        self.watch(control)
        per_replica = [pss_mb(pids) for pids in replicas.values()]
        out: dict[str, Any] = {
            "replica_pids": sorted(in_replicas),
            "replica_pss_mb": per_replica,
            "replicas_pss_mb": sum(per_replica),
            "actor_pss_mb": [pss_mb([p]) for p in sorted(actors)],
            "fork_server_pids": sorted(forks),
            "fork_server_pss_mb": pss_mb(forks),
            "ray_rest_pss_mb": pss_mb(every - in_replicas - actors - forks),
            "control_plane_procs": len(control),
            "control_plane_pss_mb": pss_mb(control),
        }
        out["total_pss_mb"] = pss_mb(every | control)
        return out

    def memory(self, data: dict[str, Any]) -> dict[str, Any]:
        """PSS of the replicas, of their fork server and of the control plane, apart."""
        if self.cluster is not None:
            return self.ray_memory()
        replicas = [int(r["pid"]) for r in data["status"]["replicas"] if r.get("pid")]
        root = self.platform.pid
        everything = shared_module("peers_serving").tree(root) | set(replicas)
        parents = {parent_pid(p) for p in replicas}
        forks = {p for p in parents if p is not None and p not in (root, 1)}
        control = everything - set(replicas) - forks
        self.watch(everything)
        per_replica = [pss_mb([p]) for p in replicas]
        out: dict[str, Any] = {
            "replica_pids": replicas,
            "replica_pss_mb": per_replica,
            "replicas_pss_mb": sum(per_replica),
            "replica_rss_mb": [rss_mb([p]) for p in replicas],
            "fork_server_pids": sorted(forks),
            "fork_server_pss_mb": pss_mb(forks),
            "control_plane_procs": len(control),
            "control_plane_pss_mb": pss_mb(control),
        }
        out["total_pss_mb"] = (
            out["replicas_pss_mb"] + out["fork_server_pss_mb"] + out["control_plane_pss_mb"]
        )
        return out
