"""The in-process event bus: how a lower service tells a higher one that something happened.

Handlers run synchronously in the publisher's transaction (they receive its session), so a
handler can veto a change by raising a StratusError, or make its own changes atomically with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Event:
    """Base class of events; subclasses are frozen dataclasses."""


@dataclass(frozen=True)
class ProjectDeleting(Event):
    """A project is about to be deleted; handlers may refuse (raise Conflict) or clean up."""

    project_id: str
    project_name: str


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
