"""Helpers for code that runs as a Stratus training job.

```python
from stratus import training

ckpt = training.checkpoint()                  # restores the job's last checkpoint, if any
step = ckpt.state.get("step", 0)              # the JSON state saved with it ({} at first)
weights = ckpt.path / "weights.npy"           # files saved with it are back in ckpt.path
for step in range(step, 100):
    ...
    np.save(ckpt.path / "weights.npy", w)
    ckpt.save({"step": step + 1})             # uploads; exits here if the job is preempted
```

A spot job is preempted with SIGTERM and a grace period; `save()` then stores the state and
ends the process, and the job resumes later from that checkpoint. `training.preempted()` tells
long steps to wrap up. Outside a job, checkpoints live in `./.stratus-checkpoint`, so the
same script runs on a laptop.

The job's runner sets these variables for the code it runs: `STRATUS_URL`, `STRATUS_API_KEY`
(a token for this job only), `STRATUS_PROJECT`, `STRATUS_JOB`, `STRATUS_JOB_ATTEMPT`,
`STRATUS_CHECKPOINT_DIR`, `STRATUS_MODEL_DIR` (files written here are registered as the model),
`STRATUS_DATA_DIR` and `STRATUS_DATASET` (when the job has a dataset), `STRATUS_RUN_ID` and
`STRATUS_EXPERIMENT` (the job's tracking run).
"""

from __future__ import annotations

from stratus.training._checkpoints import Checkpoint, checkpoint, preempted
from stratus.training._context import JobContext, current_job

__all__ = ["Checkpoint", "JobContext", "checkpoint", "current_job", "preempted"]
