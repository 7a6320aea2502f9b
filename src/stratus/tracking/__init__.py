"""Experiment tracking: experiments, runs, params, metric series, tags and artifacts.

The package is the tracking service (`tables`, `schemas`, `service`, `routes`), and, for
training code, the face of the SDK that logs to it:

    import stratus.tracking as tracking

    with tracking.start_run(experiment="churn", name="lr-c1") as run:
        run.log_params({"C": 1.0})
        run.log_metric("loss", 0.3, step=1)
        run.log_model("model.skops", name="churn", dataset_version="churn:3")

Those functions live in the SDK (`stratus.client._runs`, above the services) and are loaded
here on first use, by `__getattr__`: importing the service never loads them, and the SDK can
import `stratus.tracking.schemas` without a cycle. `.importlinter` names this one upward
import as the layering's only exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratus.client._runs import (
        ActiveRun,
        active_run,
        end_run,
        log_artifact,
        log_metric,
        log_metrics,
        log_model,
        log_param,
        log_params,
        resume_run,
        set_tags,
        start_run,
    )

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "resume_run",
    "set_tags",
    "start_run",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stratus.client import _runs

        return getattr(_runs, name)
    raise AttributeError(f"module 'stratus.tracking' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
