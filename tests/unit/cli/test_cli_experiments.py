"""How `stratus experiments` fills its cells: which params get a column, values, durations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stratus.cli.experiments import duration_text, key_params, value_text
from stratus.tracking import schemas as ts


def _run(**fields: Any) -> ts.RunRead:
    return ts.RunRead.model_validate(
        {
            "id": "run_1",
            "experiment": "e",
            "project": "p",
            "name": "",
            "state": "running",
            "created_by": "user:x",
            "started_at": "2030-01-01T00:00:00Z",
            "ended_at": None,
            "params": {},
            "tags": {},
            "metrics": {},
            **fields,
        }
    )


def test_cli_cells() -> None:
    runs = [
        _run(params={"C": 1.0, "solver": "lbfgs"}),
        _run(params={"C": 0.1, "solver": "lbfgs", "l1": True}),
    ]
    assert key_params(runs) == ["C", "l1"]
    assert key_params(runs[:1]) == ["C", "solver"]
    assert [value_text(v) for v in (0.123456, True, None, "NaN", 3)] == [
        "0.1235", "true", "-", "NaN", "3",
    ]  # fmt: skip
    ended = _run(ended_at="2030-01-01T01:02:03Z")
    assert duration_text(ended) == "1h02m"
    assert duration_text(_run(), now=datetime(2030, 1, 1, 0, 1, 5, tzinfo=UTC)) == "1m05s"
