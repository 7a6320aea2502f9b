"""The Python SDK. Import it as `stratus.Client`; the implementation is private."""

from __future__ import annotations

from stratus.client._client import Client
from stratus.client._inference import Prediction

__all__ = ["Client", "Prediction"]
