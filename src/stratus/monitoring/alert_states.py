"""The alert state machine, as a pure function: a rule, what it knew of each series, the
samples of this evaluation and the time → what it knows now and the transitions to record.

Per series: inactive → pending when the condition holds → firing once it has held for
`for_seconds` (at once when that is 0); firing → resolved (then inactive) when it no longer
holds or the series disappears. A NaN sample counts as no sample. No I/O here: the
evaluator (`alert_evaluator.py`) feeds it and writes what it returns.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from stratus.monitoring.alert_schemas import AlertRuleSpec

SeriesKey = tuple[tuple[str, str], ...]  # sorted (label, value) pairs
MAX_INSTANCES = 200  # series shown in a rule's status (firing and pending ones always)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_RANK = {"firing": 2, "pending": 1, "inactive": 0}


@dataclass(frozen=True)
class Sample:
    """One sample of the platform's registry: its name (counters end in `_total`), labels
    and value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Instance:
    """What the rule knows of one series."""

    labels: SeriesKey
    state: str  # inactive | pending | firing
    value: float | None
    active_since: datetime | None
    last_evaluated_at: datetime | None


@dataclass(frozen=True)
class Transition:
    """A series started firing or was resolved: one history row and one notification."""

    labels: SeriesKey
    state: str  # firing | resolved
    value: float | None
    started_at: datetime | None
    time: datetime


def key_of(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted(labels.items()))


def holds(value: float, comparison: str, threshold: float) -> bool:
    return _COMPARE[comparison](value, threshold)


def select(
    samples: Iterable[Sample], metric: str, match: Mapping[str, str], project: str
) -> dict[SeriesKey, float]:
    """The series a rule watches: name `metric`, labels including `match`, and `project`
    equal to the rule's own (a rule never sees another project's series)."""
    wanted = {**match, "project": project}
    found: dict[SeriesKey, float] = {}
    for sample in samples:
        if sample.name != metric or math.isnan(sample.value):
            continue
        labels = sample.labels
        if all(labels.get(k) == v for k, v in wanted.items()):
            found[key_of(labels)] = sample.value
    return found


def step(
    spec: AlertRuleSpec,
    previous: Mapping[SeriesKey, Instance],
    series: Mapping[SeriesKey, float],
    now: datetime,
) -> tuple[dict[SeriesKey, Instance], list[Transition]]:
    """One evaluation of a rule. A disabled rule sees no series (so what fired resolves)."""
    if not spec.enabled:
        series = {}
    current: dict[SeriesKey, Instance] = {}
    transitions: list[Transition] = []
    for key, value in series.items():
        before = previous.get(key)
        was = before.state if before is not None else "inactive"
        if not holds(value, spec.comparison, spec.threshold):
            if was == "firing":
                since = before.active_since if before is not None else None
                transitions.append(Transition(key, "resolved", value, since, now))
            current[key] = Instance(key, "inactive", value, None, now)
            continue
        since = before.active_since if before is not None and was != "inactive" else None
        since = since or now
        if was == "firing":
            current[key] = Instance(key, "firing", value, since, now)
        elif (now - since).total_seconds() >= spec.for_seconds:
            current[key] = Instance(key, "firing", value, since, now)
            transitions.append(Transition(key, "firing", value, since, now))
        else:
            current[key] = Instance(key, "pending", value, since, now)
    for key, before in previous.items():
        if key not in series and before.state == "firing":  # the series is gone
            transitions.append(Transition(key, "resolved", before.value, before.active_since, now))
    return current, transitions


def worst(instances: Iterable[Instance]) -> str:
    """The rule's state: the worst over its series."""
    return max((i.state for i in instances), key=_RANK.__getitem__, default="inactive")


def shown(instances: Iterable[Instance]) -> list[Instance]:
    """The instances a status lists: firing, then pending, then inactive, each by labels;
    inactive ones only up to MAX_INSTANCES in all."""
    ordered = sorted(instances, key=lambda i: (-_RANK[i.state], i.labels))
    return [i for n, i in enumerate(ordered) if i.state != "inactive" or n < MAX_INSTANCES]
