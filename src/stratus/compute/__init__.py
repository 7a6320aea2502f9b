"""Compute backends: where and how model replicas and training jobs run.

`backend.py` holds the seam (the `ComputeBackend` Protocol and its handle and status types);
`local.py` runs replicas as local processes, optionally forked from a pre-warmed fork server,
and `local_jobs.py` runs jobs as local processes under the limits of `limits.py`, sized by the
instance types of `instance_types.py`.
"""
