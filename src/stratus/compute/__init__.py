"""Compute backends: where and how model replicas and training jobs run.

`backend.py` holds the seam (the `ComputeBackend` Protocol and its backend-neutral handle and
status types), `addresses.py` the replica address URLs, and `backends.py` the backends by name,
each imported only when chosen:
- `local.py` runs replicas as local processes, optionally forked from a pre-warmed fork server,
  and `local_jobs.py` runs jobs as local processes under the limits of `limits.py`, sized by the
  instance types of `instance_types.py`;
- `ray_backend.py` runs both as named, detached actors on a Ray cluster, each wrapping a process
  on its node (`ray_node.py`, which imports no Ray);
- `fake.py` is an in-memory backend for tests of the controllers.
"""
