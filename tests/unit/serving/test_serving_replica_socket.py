"""A replica's socket path appears only once it accepts: whoever waits for the path (a backend's
probe, a test) never meets a socket that exists but refuses connections."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from stratus.registry.batches import Batch
from stratus.serving.connections import ReplicaConnection
from stratus.serving.replica import ReplicaSpec, serve


class Constant:
    supports_batching = False

    def predict(self, batch: Batch) -> Any:
        return [0] * batch.n_rows


def test_the_socket_path_appears_only_once_it_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(prefix="st-") as folder:  # unix socket paths are short
        path = Path(folder) / "r.sock"
        seen_at_listen: list[bool] = []
        listen = socket.socket.listen

        def spying(self: socket.socket, *args: Any) -> None:
            seen_at_listen.append(path.exists())
            listen(self, *args)

        monkeypatch.setattr(socket.socket, "listen", spying)
        spec = ReplicaSpec(
            model_dir=Path(folder),
            flavor="python",
            model_name="m",
            model_version=1,
            address=f"unix://{path}",
            secret="s" * 32,
        )

        async def main() -> None:
            stop = asyncio.Event()
            serving = asyncio.create_task(serve(spec, Constant(), stop))
            for _ in range(500):
                if path.exists():
                    break
                await asyncio.sleep(0.01)
            connection = await ReplicaConnection.open(
                f"unix://{path}", "s" * 32
            )  # the path accepts at once
            assert connection.hello["model"] == "m"
            await connection.close()
            stop.set()
            await serving

        asyncio.run(main())
        assert seen_at_listen == [False]  # not yet at its path while it could still refuse
        assert not path.exists() and not list(Path(folder).iterdir())
