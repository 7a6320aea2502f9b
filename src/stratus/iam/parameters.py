"""Query parameters every list route shares: pages and label selectors (here because every
service's routes already stand on `iam` for authorization, and `core` knows no HTTP)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from stratus.core.resources import MAX_LIMIT

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
PageToken = Annotated[str | None, Query(max_length=2000, description="from the previous page")]
Selector = Annotated[
    str | None, Query(max_length=1000, description="label selector, e.g. 'team=ml,tier!=dev'")
]
