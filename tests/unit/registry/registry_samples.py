"""Shared types for the registry's unit tests (a distinct name, so other test folders' helpers
cannot shadow it); the fixtures that build them live in conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stratus.registry.batches import Batch
from stratus.registry.signatures import Signature

ArtifactMaker = Callable[[str], Path]


def single(predictions: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """The one output array of a flavor's predict."""
    assert isinstance(predictions, np.ndarray), predictions
    return predictions


@dataclass(frozen=True)
class Cancer:
    X: np.ndarray  # 569 × 30 float64
    y: np.ndarray
    names: list[str]  # "mean radius", ...
    signature: Signature

    def rows(self, n: int, start: int = 0) -> list[list[float]]:
        """Rows as they arrive in a JSON request."""
        rows: list[list[float]] = self.X[start : start + n].tolist()
        return rows

    def batch(self, n: int, start: int = 0) -> Batch:
        return Batch.from_rows(self.rows(n, start), self.signature)
