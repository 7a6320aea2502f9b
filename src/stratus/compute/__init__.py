"""Compute backends: where and how model replicas run.

`backend.py` holds the seam (the `ComputeBackend` Protocol and its handle and status types);
`local.py` runs replicas as local processes, optionally forked from a pre-warmed fork server.
"""
