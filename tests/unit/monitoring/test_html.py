"""The drift report's HTML page: the verdict, a chart per feature, and every name escaped."""

from __future__ import annotations

import re

import numpy as np

from stratus.monitoring.html import render_drift_html
from stratus.monitoring.statistics import DriftReport, DriftSettings, Reference, compute_drift


def report(drift_share: float = 0.5) -> DriftReport:
    rng = np.random.default_rng(4)
    reference = {
        "<b>bold</b>": rng.normal(0, 1, 500),
        "steady": rng.normal(0, 1, 500),
        "colour": rng.choice(["red", "<script>alert(1)</script>"], 500),
        "empty": np.arange(5.0),
    }
    current = {
        "<b>bold</b>": rng.normal(2, 1, 400),
        "steady": rng.normal(0, 1, 400),
        "colour": rng.choice(["red", "<script>alert(1)</script>"], 400),
        "empty": np.full(400, np.nan),
    }
    settings = DriftSettings(drift_share=drift_share)
    return compute_drift(Reference.from_columns(reference), current, settings)


def test_one_chart_per_feature_and_the_verdict() -> None:
    drifted = report(drift_share=0.3)
    page = render_drift_html(drifted, "Drift: default/churn", "reference churn:2")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == len(drifted.features) == 4
    assert "Drift detected" in page and "No drift" not in page
    assert "1 of 3 features with a score drifted (33%)" in page
    assert "reference churn:2" in page and "500 rows" in page and "400 rows" in page
    assert page.count("<tr") == 1 + len(drifted.features)  # the header and one row each
    assert "reference</text>" in page and "current</text>" in page  # the legend

    calm = render_drift_html(report(drift_share=0.5), "Drift")
    assert "No drift" in calm and "Drift detected" not in calm


def test_every_name_is_escaped() -> None:
    page = render_drift_html(report(), "<i>title</i>", "a & b")
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<i>title</i>" not in page and "&lt;i&gt;title&lt;/i&gt;" in page
    assert "a &amp; b" in page


def test_self_contained() -> None:
    page = render_drift_html(report(), "Drift")
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
