"""The SDK's platform administration: the master key's rotation (platform admins only)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable

from stratus.client._base import API, seg
from stratus.core.errors import ServiceUnavailable
from stratus.storage import schemas as storage

ROTATIONS = "/api/v1/admin/master-key/rotations"


class Admin(API):
    def rotate_master_key(self) -> storage.MasterKeyRotationRead:
        """Start rotating the master key (or carry on one that did not finish); it runs on the
        platform while it serves: follow it with `wait_for_master_key_rotation`.

        Raises:
            stratus.errors.PermissionDenied: the caller is not a platform admin.
            stratus.errors.Conflict: the platform's master key comes from
                STRATUS_MASTER_KEY, which it cannot rewrite (the detail says what to do).
        """
        return self._c._model(storage.MasterKeyRotationRead, "POST", ROTATIONS)

    def master_key_rotation(self, rotation_id: str) -> storage.MasterKeyRotationRead:
        return self._c._model(
            storage.MasterKeyRotationRead, "GET", f"{ROTATIONS}/{seg(rotation_id)}"
        )

    def master_key_rotations(self) -> builtins.list[storage.MasterKeyRotationRead]:
        """Every rotation, newest first."""
        return list(self._c._pages(storage.MasterKeyRotationRead, ROTATIONS, {}))

    def wait_for_master_key_rotation(
        self,
        rotation_id: str,
        *,
        timeout: float | None = None,
        interval: float = 0.5,
        on_progress: Callable[[storage.MasterKeyRotationRead], None] | None = None,
    ) -> storage.MasterKeyRotationRead:
        """Poll the rotation until it is no longer running (finished, or interrupted: see its
        `error`), calling `on_progress` with each status.

        Raises:
            stratus.errors.ServiceUnavailable: still running after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rotation = self.master_key_rotation(rotation_id)
            if on_progress is not None:
                on_progress(rotation)
            if rotation.state != "running":
                return rotation
            if deadline is not None and time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"master key rotation {rotation_id} is still running after {timeout:g} s "
                    f"({rotation.keys_done} of {rotation.keys_total} data keys re-wrapped)"
                )
            time.sleep(interval)
