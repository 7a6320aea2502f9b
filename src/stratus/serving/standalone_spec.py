"""What a standalone replica serves: the model version's facts, written beside its files by
`stratus export dockerfile` and read by `python -m stratus.serving.standalone --spec FILE`.

Only pydantic here, so the exporter (which runs in the light CLI) and the runtime share one
shape; how to serve (address, batching, pass-through columns) is given on the command line.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StandaloneSpec(BaseModel):
    """One model version, as the registry described it when it was exported."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1, max_length=200)
    model_version: int = Field(ge=1)
    flavor: str = Field(min_length=1, max_length=32)
    trusted: bool = Field(
        False,
        description="the version was marked trusted in the registry: its pickles or code may "
        "load (a flavor refuses them otherwise)",
    )
    signature: dict[str, Any] | None = None
