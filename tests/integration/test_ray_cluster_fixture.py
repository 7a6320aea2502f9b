"""The `ray_cluster` fixture: three real Ray nodes on loopback addresses, and node loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ray

# A driver in a subprocess, so that this process never calls ray.init: it places one actor on a
# worker (the custom resource) and prints where it runs.
DRIVER = textwrap.dedent(
    """
    import json, sys
    import ray

    ray.init(address=sys.argv[1], namespace="fixture-test", log_to_driver=False)

    @ray.remote(num_cpus=0.25, resources={"worker_node": 1})
    class Where:
        def ip(self):
            return ray.util.get_node_ip_address()

    actor = Where.remote()
    print(json.dumps({"actor_ip": ray.get(actor.ip.remote(), timeout=120),
                      "nodes": sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])}))
    ray.kill(actor)
    ray.shutdown()
    """
)


def test_three_nodes_are_alive_at_their_loopback_addresses(ray_cluster) -> None:
    head, *workers = ray_cluster.ips
    assert len(workers) == 2
    assert all(ip.startswith("127.0.0.") and ip != "127.0.0.1" for ip in ray_cluster.ips)
    assert ray_cluster.address == f"{head}:{ray_cluster.port}"
    assert ray_cluster.alive_ips() == sorted(ray_cluster.ips)
    for ip in ray_cluster.ips:
        assert ray_cluster.nodes[ip].pids(), f"no processes for the Ray node {ip}"


def test_a_driver_connects_and_places_an_actor_on_a_worker(ray_cluster) -> None:
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, ray_cluster.address],
        env={**os.environ, **ray_cluster.env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["actor_ip"] in ray_cluster.worker_ips
    assert seen["nodes"] == sorted(ray_cluster.ips)


def test_kill_node_loses_a_worker_and_add_node_brings_it_back(ray_cluster) -> None:
    lost = ray_cluster.worker_ips[-1]
    pids = ray_cluster.nodes[lost].pids()
    try:
        ray_cluster.kill_node(lost)

        assert not any(_alive(pid) for pid in pids)
        ray_cluster.wait_for_nodes([ip for ip in ray_cluster.ips if ip != lost], timeout=60)

        ray_cluster.add_node(lost)
        ray_cluster.wait_for_nodes(ray_cluster.ips, timeout=60)
        assert ray_cluster.nodes[lost].pids()
    finally:
        if lost not in ray_cluster.nodes:  # leave the session's cluster whole for later tests
            ray_cluster.add_node(lost)
    with pytest.raises(ValueError):
        ray_cluster.kill_node(ray_cluster.head_ip)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
