"""Schemathesis hooks for test_openapi_fuzz.py, loaded by the `schemathesis` CLI it runs.

The fuzzer calls every operation as the platform's admin, including the destructive ones. Two
kinds of call would end the run's meaning rather than test anything: the admin disabling,
demoting or deleting itself (possible once the fuzzer has created a second admin), and the
admin revoking the very API key the run authenticates with. Either turns every later request
into a 401/403, so the remaining operations would never reach their logic. Such calls are
pointed at a user or key that does not exist instead: the operation is still called with the
rest of its generated input, and its 404 is checked like any other response.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

ADMIN = os.environ.get("STRATUS_FUZZ_ADMIN", "admin")
KEY_ID = os.environ.get("STRATUS_FUZZ_KEY_ID", "")
DECOY_USER = "fuzz-protected-admin"
DECOY_KEY = "fuzz-protected-key"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    params = case.path_parameters
    if not params:
        return
    method = case.method.upper()
    if case.path == "/api/v1/users/{name}" and method in ("PATCH", "DELETE"):
        if params.get("name") == ADMIN:
            params["name"] = DECOY_USER
    elif case.path == "/api/v1/keys/{key_id}" and method == "DELETE":
        if KEY_ID and params.get("key_id") == KEY_ID:
            params["key_id"] = DECOY_KEY
