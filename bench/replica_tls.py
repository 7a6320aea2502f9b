#!/usr/bin/env python3
"""What mutual TLS costs between the gateway and a replica on TCP: one `ReplicaConnection` (the
gateway's side) to one replica process (`stratus.serving.replica.serve`, a model that answers
0 for every row), over a unix socket, plain TCP and TCP with mutual TLS, on loopback.

For each transport, in rounds (the order rotated each round), it measures:
  open      connecting with the secret (and, over TLS, the handshake) until the greeting
  serial    single-row predictions one after another (p50 and p99 latency)
  c32       single-row predictions, 32 in flight on the one multiplexed connection (req/s)
  frames    STATS frames, 32 in flight: the connection's own cost, no model (frames/s)
  upload    700 kB request bodies the replica does not parse (METADATA), 4 in flight (MB/s)
and prints medians over the rounds and each figure's ratio to plain TCP (the reference measured
in the same run). The replica runs in a process of its own (both on uvloop, as in production),
so the two sides share the machine's cores as a gateway and a replica would on one node.

    .venv/bin/python bench/replica_tls.py [--rounds 5] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from stratus.endpoints.replica_authority import ReplicaAuthority
from stratus.registry.batches import Batch
from stratus.serving.connections import ReplicaConnection
from stratus.serving.replica import ReplicaSpec, serve
from stratus.serving.replica_tls import replica_identity
from stratus.serving.wire import Kind

SECRET = "b" * 32
REPLICA = "bench.main.1.00000000.000000"
JSON = "application/json"
ONE_ROW = orjson.dumps({"instances": [[0.5] * 30]})
BULK = orjson.dumps({"instances": [[0.5] * 30] * 2000})  # ~700 kB


class Zeros:
    supports_batching = True

    def predict(self, batch: Batch) -> Any:
        return [0] * batch.n_rows


def _replica(spec_json: str, pipe: Any) -> None:
    """The replica process: serve until SIGTERM, telling the parent where it listens."""
    import uvloop

    spec = ReplicaSpec.model_validate_json(spec_json)
    uvloop.run(serve(spec, Zeros(), on_listening=pipe.send))


def start_replica(spec: ReplicaSpec) -> tuple[multiprocessing.Process, str]:
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_replica, args=(spec.model_dump_json(), theirs), daemon=True
    )
    process.start()
    if not ours.poll(30):
        process.kill()
        raise RuntimeError("the replica did not listen within 30 s")
    return process, ours.recv()


async def measure(address: str, tls: Any, requests: int) -> dict[str, float]:
    identity = replica_identity(REPLICA) if tls is not None else ""
    opens = []
    for _ in range(20):
        started = time.perf_counter()
        connection = await ReplicaConnection.open(address, SECRET, tls=tls, identity=identity)
        opens.append(time.perf_counter() - started)
        await connection.close()
    connection = await ReplicaConnection.open(address, SECRET, tls=tls, identity=identity)
    try:
        for _ in range(200):  # warm up
            await connection.call(Kind.PLAIN_PREDICT, JSON, ONE_ROW)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            answer = await connection.call(Kind.PLAIN_PREDICT, JSON, ONE_ROW)
            latencies.append(time.perf_counter() - started)
            assert answer.status == 200, answer.body
        latencies.sort()

        async def stream(count: int, kind: Kind, body: bytes) -> None:
            for _ in range(count):
                answer = await connection.call(kind, JSON, body)
                assert answer.status == 200, answer.body

        async def rate(streams: int, count: int, kind: Kind, body: bytes) -> float:
            started = time.perf_counter()
            await asyncio.gather(*(stream(count, kind, body) for _ in range(streams)))
            return streams * count / (time.perf_counter() - started)

        c32 = await rate(32, requests // 32, Kind.PLAIN_PREDICT, ONE_ROW)
        frames = await rate(32, requests // 8, Kind.STATS, b"")
        upload = await rate(4, 25, Kind.METADATA, BULK) * len(BULK) / 1e6
    finally:
        await connection.close()
    return {
        "open_ms": statistics.median(opens) * 1e3,
        "serial_p50_us": latencies[len(latencies) // 2] * 1e6,
        "serial_p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "c32_rps": c32,
        "frames_fps": frames,
        "upload_MBps": upload,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="st-bench-") as folder:
        root = Path(folder)
        authority = ReplicaAuthority(root / "tls")
        base = dict(model_dir=root, flavor="python", model_name="m", model_version=1, secret=SECRET)
        specs = {
            "unix": ReplicaSpec(**base, address=f"unix://{root}/r.sock"),
            "tcp": ReplicaSpec(**base, address="tcp://127.0.0.1:0"),
            "tcp+mtls": ReplicaSpec(
                **base, address="tcp://127.0.0.1:0", tls=authority.issue(REPLICA)
            ),
        }
        gateway = authority.client_context()
        started = {name: start_replica(spec) for name, spec in specs.items()}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in specs}
        try:
            order = list(specs)
            for round_ in range(args.rounds):
                for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    tls = gateway if name == "tcp+mtls" else None
                    figures = uvloop.run(measure(started[name][1], tls, args.requests))
                    results[name].append(figures)
                    print(f"round {round_ + 1} {name:9} " + "  ".join(
                        f"{k} {v:,.1f}" for k, v in figures.items()
                    ), flush=True)  # fmt: skip
        finally:
            for process, _ in started.values():
                process.terminate()
                process.join(10)
    medians = {
        name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for name, rounds in results.items()
    }
    print(f"\nmedians over {args.rounds} rounds (ratio to plain tcp)")
    for name, figures in medians.items():
        cells = [f"{k} {v:,.1f} ({v / medians['tcp'][k]:.2f}x)" for k, v in figures.items()]
        print(f"  {name:9} " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
