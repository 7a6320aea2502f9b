"""`stratus.training.checkpoint()`: save a job's state as it trains, restore it when the job
resumes after a preemption (or a retry).

The runner restores the last checkpoint into `STRATUS_CHECKPOINT_DIR` before the user's code
starts; `save()` writes the JSON state beside the files there, archives the folder and uploads
it (the control plane swaps it in only once it is whole). SIGTERM — a spot preemption or a
cancel — sets a flag: the next `save()` stores the state and ends the process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.training._context import current_job

if TYPE_CHECKING:
    from stratus.client import Client

STATE_FILE = ".stratus-state.json"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, as a process killed by it reports

_stop_requested = threading.Event()
_handler_installed = False


def preempted() -> bool:
    """Whether this job was asked to stop (SIGTERM): save a checkpoint and return soon."""
    return _stop_requested.is_set()


def _install_handler() -> None:
    global _handler_installed
    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum: int, frame: Any) -> None:
        _stop_requested.set()
        print("stratus: stop requested (SIGTERM): saving at the next checkpoint", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    _handler_installed = True


class Checkpoint:
    """A job's checkpoint: `state` (JSON) and the files in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        state_file = self.path / STATE_FILE
        self.state: dict[str, Any] = {}
        if state_file.is_file():
            self.state = json.loads(state_file.read_text(encoding="utf-8"))
        self.restored = bool(self.state) or any(p.name != STATE_FILE for p in self.path.iterdir())

    @property
    def step(self) -> int | None:
        step = self.state.get("step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def save(self, state: dict[str, Any] | None = None, *, step: int | None = None) -> None:
        """Store `state` (JSON-serializable) with the files in `path`; in a job, upload them.

        Args:
            state: replaces the saved state; None keeps the current one.
            step: the training step it holds (default: `state["step"]` when an int).

        Raises:
            SystemExit: after saving, when the job was asked to stop (a preemption).
        """
        if state is not None:
            self.state = dict(state)
        payload = json.dumps(self.state, allow_nan=False)
        temp = self.path / f".{STATE_FILE}.tmp"
        temp.write_text(payload, encoding="utf-8")
        os.replace(temp, self.path / STATE_FILE)
        context = current_job()
        if context.in_job:
            self._upload(step if step is not None else self.step)
        if preempted():
            print("stratus: checkpoint saved; stopping for the preemption", flush=True)
            sys.stdout.flush()
            raise SystemExit(PREEMPTED_EXIT_CODE)

    def _upload(self, step: int | None) -> None:
        from stratus.client import Client

        context = current_job()
        assert context.project is not None and context.job is not None
        with Client() as client:
            upload_checkpoint(client, context.project, context.job, self.path, step)


def upload_checkpoint(
    client: Client, project: str, job: str, folder: Path, step: int | None
) -> int:
    """Archive `folder` (hidden files included) as the job's checkpoint; its size in bytes."""
    from stratus.client._archives import code_files, pack

    archive, _, size, _ = pack(folder, code_files(folder))
    with archive:
        params = {} if step is None else {"step": str(step)}
        client._send(
            "PUT",
            f"/api/v1/projects/{project}/jobs/{job}/checkpoint",
            params=params,
            content=iter(lambda: archive.read(1 << 20), b""),  # streamed, not held in memory
            headers={"content-length": str(size)},
        )
    return size


def checkpoint() -> Checkpoint:
    """The job's checkpoint, restored from its last save (empty at the first attempt)."""
    _install_handler()
    return Checkpoint(current_job().checkpoint_dir)
