"""Where the serving benchmark's inputs live, and its fixed settings.

Read by bench/serving.py and its sibling modules: ../shared/bench (the peers' scripts,
read-only; `shared_module` imports one of them), the peers' venvs and model files under
PEERS_DIR, the models measured and the reference servers reported.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STRATUS_BENCH_SHARED", str(ROOT.parent / "shared" / "bench")))
PEERS = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
VENV = PEERS / "venv" / "bin"
VENV_BENTO = PEERS / "venv-bento" / "bin"
MODELS = PEERS / "models"
PROJECT = "default"
MODEL_NAMES = ("lr", "rf")
POLL_S = 0.02  # cold start: predict is polled this often
REFERENCES = ("thin-w2", "echo-w2", "mlflow-w2", "bentoml-w2-batch")


def shared_module(name: str) -> ModuleType:
    """A script of ../shared/bench (read-only), imported as a module."""
    if str(SHARED) not in sys.path:
        sys.path.insert(0, str(SHARED))
    return importlib.import_module(name)
