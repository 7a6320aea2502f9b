"""The master key's HTTP surface, for platform admins: start (or carry on) a rotation and
follow it. The audit middleware records the start; the rotation records its own end."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request

from stratus.core.resources import DEFAULT_LIMIT, Page
from stratus.iam.authorization import Admin
from stratus.iam.parameters import Limit, PageToken
from stratus.storage import schemas as s
from stratus.storage.key_rotation import MasterKeyRotation

router = APIRouter(prefix="/api/v1/admin/master-key", tags=["admin"])


def _rotation(request: Request) -> MasterKeyRotation:
    return cast(MasterKeyRotation, request.app.state.platform.master_key_rotation)


@router.post(
    "/rotations",
    name="master_key.rotations.start",
    status_code=202,
    response_model=s.MasterKeyRotationRead,
)
def start_rotation(request: Request, principal: Admin) -> s.MasterKeyRotationRead:
    """Rotate the master key while the platform serves: every data key is re-wrapped under a
    new key, then the key file is replaced. A rotation that did not finish is carried on
    instead of starting another. Refused (409) when the key comes from STRATUS_MASTER_KEY."""
    return _rotation(request).start(principal.subject)


@router.get(
    "/rotations",
    name="master_key.rotations.list",
    response_model=Page[s.MasterKeyRotationRead],
)
def list_rotations(
    request: Request, _: Admin, limit: Limit = DEFAULT_LIMIT, page_token: PageToken = None
) -> Page[s.MasterKeyRotationRead]:
    """Rotations, newest first."""
    items, token = _rotation(request).list(limit, page_token)
    return Page(items=items, next_page_token=token)


@router.get(
    "/rotations/{rotation_id}",
    name="master_key.rotations.get",
    response_model=s.MasterKeyRotationRead,
)
def get_rotation(request: Request, _: Admin, rotation_id: str) -> s.MasterKeyRotationRead:
    return _rotation(request).get(rotation_id)
