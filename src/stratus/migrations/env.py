"""Alembic environment: the metadata of every service's tables."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import stratus.billing.tables  # noqa: F401  (registers tables on Base.metadata)
import stratus.console.sessions  # noqa: F401
import stratus.core.lease  # noqa: F401
import stratus.core.outbox  # noqa: F401
import stratus.data.tables  # noqa: F401
import stratus.endpoints.tables  # noqa: F401
import stratus.iac.leases  # noqa: F401
import stratus.iam.tables  # noqa: F401
import stratus.jobs.tables  # noqa: F401
import stratus.monitoring.alert_tables  # noqa: F401
import stratus.monitoring.tables  # noqa: F401
import stratus.pipelines.tables  # noqa: F401
import stratus.registry.tables  # noqa: F401
import stratus.secrets.tables  # noqa: F401
import stratus.storage.tables  # noqa: F401
import stratus.tracking.tables  # noqa: F401
from stratus.core.database import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
