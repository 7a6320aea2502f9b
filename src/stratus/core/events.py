"""The in-process event bus: how a lower service tells a higher one that something happened.

Handlers run synchronously in the publisher's transaction (they receive its session), so a
handler can veto a change by raising a StratusError, or make its own changes atomically with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from stratus.core.errors import Conflict


@dataclass(frozen=True)
class Event:
    """Base class of events; subclasses are frozen dataclasses."""


@dataclass(frozen=True)
class ProjectDeleting(Event):
    """A project is about to be deleted; handlers may refuse (raise Conflict) or clean up."""

    project_id: str
    project_name: str


@dataclass(frozen=True)
class ModelVersionDeleting(Event):
    """A model version (or, with `version` None, a whole model) is about to be deleted;
    services that use it (endpoints) refuse with a Conflict."""

    project_uid: str
    model: str
    version: int | None


@dataclass(frozen=True)
class DatasetVersionCommitted(Event):
    """A new dataset version is ready (published in the committing transaction); pipelines
    that watch the dataset queue a run in it (an outbox row), started once it has committed."""

    project: str
    dataset: str
    version: int


@dataclass(frozen=True)
class AlertFired(Event):
    """An alert started firing (published in the transaction that records it): pipelines
    with an alert trigger naming `rule` queue a run in that same transaction (an outbox row)."""

    project_uid: str
    project: str
    rule: str
    labels: tuple[tuple[str, str], ...]
    value: float | None


E = TypeVar("E", bound=Event)
Handler = Callable[[Session, Any], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[Session, E], None]) -> None:
        self._handlers[event_type].append(handler)

    def publish(self, session: Session, event: Event) -> None:
        for handler in self._handlers[type(event)]:
            handler(session, event)


def guard_project_deletion(
    bus: EventBus,
    project_column: InstrumentedAttribute[str],
    name_column: InstrumentedAttribute[str],
    what: str,
) -> None:
    """Refuse to delete a project while rows of a service (`what`, e.g. "buckets") remain."""

    def refuse(session: Session, event: ProjectDeleting) -> None:
        names = session.scalars(
            select(name_column).where(project_column == event.project_id).limit(5)
        ).all()
        if names:
            raise Conflict(
                f"project {event.project_name!r} still has {what} ({', '.join(names)}): "
                "delete them first"
            )

    bus.subscribe(ProjectDeleting, refuse)
