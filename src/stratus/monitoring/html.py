"""A drift report as one self-contained HTML page: the verdict, a table of every feature's
tests, and a chart per feature (reference and current side by side) drawn as inline SVG.

Nothing is fetched and nothing runs (no scripts, fonts or stylesheets from elsewhere), so the
page can be saved, mailed or attached to an alert as it is. Feature and category names come
from users' data: every text is escaped.
"""

from __future__ import annotations

from html import escape

from stratus.monitoring.drift_reports import P_VALUE_METHODS, DriftReport, FeatureDrift
from stratus.monitoring.schemas import MonitorResultRead

REFERENCE_COLOUR = "#5b8def"
CURRENT_COLOUR = "#f28e2b"
WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 62  # the plot's margins, for axis labels and legend

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:1180px;padding:0 16px;color:#1f2933}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
h3{font-size:15px;margin:0 0 6px}.sub{color:#52606d;margin:0 0 14px}
.verdict{border-radius:6px;padding:12px 16px;margin:12px 0}
.verdict strong{font-size:17px}.bad{background:#fde8e8;border:1px solid #f5b5b5}
.good{background:#e6f6ec;border:1px solid #a8dcb9}.verdict p{margin:4px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap}
th{background:#f5f7fa;position:sticky;top:0}th:first-child,td:first-child,td.text{text-align:left}
tr.drift td{background:#fff4f4}td.yes{color:#b42318;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:18px}
section{border:1px solid #e4e7eb;border-radius:6px;padding:10px 12px}
section p{color:#52606d;margin:0 0 6px;font-size:13px}svg text{font:11px sans-serif;fill:#3e4c59}
""".strip()


def render_drift_html(report: DriftReport, title: str, subtitle: str = "") -> str:
    """The whole page for a report; `title` and `subtitle` (a window, a reference) head it."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(subtitle)}</p>' if subtitle else "",
        _verdict(report),
        "<h2>Features</h2>",
        _table(report),
        "<h2>Distributions</h2>",
        '<div class="charts">',
        *(_section(i, f) for i, f in enumerate(report.features)),
        "</div></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def result_page(result: MonitorResultRead, title: str) -> str:
    """The page of a drift result (a monitor's, or an ad hoc report): its window and
    reference under the title."""
    report = DriftReport.from_json(result.report)
    window = ""
    if result.window_start and result.window_end:
        window = f"{result.window_start:%Y-%m-%d %H:%M:%S} to {result.window_end:%H:%M:%S} UTC, "
    return render_drift_html(
        report, title=f"Drift: {title}", subtitle=f"{window}reference {result.reference}"
    )


def _verdict(report: DriftReport) -> str:
    s = report.settings
    scored = sum(f.score is not None for f in report.features)
    head = "Drift detected" if report.drifted else "No drift"
    lines = [
        f"{report.drifted_features} of {scored} features with a score drifted "
        f"({report.share:.0%}); the dataset drifts at {s.drift_share:.0%} or more.",
        f"Reference: {report.reference_rows:,} rows · current: {report.current_rows:,} rows.",
        f"Numbers: {_rule(s.numeric_method, s.numeric_threshold)} · "
        f"categories: {_rule(s.categorical_method, s.categorical_threshold)}.",
    ]
    unscored = [f.name for f in report.features if f.score is None]
    if unscored:
        lines.append(f"No values on one side (no score): {', '.join(unscored)}.")
    body = "".join(f"<p>{escape(line)}</p>" for line in lines)
    tone = "bad" if report.drifted else "good"
    return f'<div class="verdict {tone}"><strong>{head}</strong>{body}</div>'


def _rule(method: str, threshold: float) -> str:
    if method in P_VALUE_METHODS:
        return f"{method} p-value < {threshold:g}"
    return f"{method} ≥ {threshold:g}"


_COLUMNS = (
    "Feature",
    "Kind",
    "Method",
    "Score",
    "Threshold",
    "Drifted",
    "KS stat",
    "KS p",
    "Wasserstein",
    "PSI",
    "χ²",
    "χ² p",
    "JS",
    "Missing",
)


def _table(report: DriftReport) -> str:
    rows = ["<table><thead><tr>"]
    rows += [f"<th>{escape(c)}</th>" for c in _COLUMNS]
    rows.append("</tr></thead><tbody>")
    for i, f in enumerate(report.features):
        drifted = "yes" if f.drifted else ("no score" if f.score is None else "no")
        cells = [
            f'<td class="text"><a href="#feature-{i}">{escape(f.name)}</a></td>',
            f'<td class="text">{escape(f.kind)}</td>',
            f'<td class="text">{escape(f.method)}</td>',
            _cell(f.score),
            _cell(f.threshold),
            f'<td class="text {"yes" if f.drifted else ""}">{drifted}</td>',
            _cell(f.ks_statistic),
            _cell(f.ks_p_value),
            _cell(f.wasserstein),
            _cell(f.psi),
            _cell(f.chi2_statistic),
            _cell(f.chi2_p_value),
            _cell(f.jensenshannon),
            f"<td>{f.missing_share:.1%}</td>",
        ]
        rows.append(f'<tr class="{"drift" if f.drifted else ""}">{"".join(cells)}</tr>')
    rows.append("</tbody></table>")
    return "".join(rows)


def _cell(value: float | None) -> str:
    return f"<td>{'–' if value is None else escape(_number(value))}</td>"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _section(index: int, f: FeatureDrift) -> str:
    score = "no score" if f.score is None else f"{f.method} {_number(f.score)}"
    state = "drifted" if f.drifted else "not drifted"
    counts = f"{f.reference_count:,} reference and {f.current_count:,} current values"
    about = escape(f"{f.kind} · {score} · {state} · {counts}")
    return (
        f'<section id="feature-{index}"><h3>{escape(f.name)}</h3>'
        f"<p>{about}</p>{_chart(f)}</section>"
    )


# --- charts -------------------------------------------------------------------------------------


def _chart(f: FeatureDrift) -> str:
    chart = f.chart
    reference: list[float] = list(chart.get("reference") or [])
    current: list[float] = list(chart.get("current") or [])
    if not reference or len(reference) != len(current):
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="40" '
            f'role="img" aria-label="{escape(f.name)}: no values">'
            '<text x="8" y="24">No values on either side to chart.</text></svg>'
        )
    if f.kind == "categorical":
        labels = [str(c) for c in chart.get("categories", [])]
        x_title = "category"
    else:
        labels = []
        x_title = "value"
    return _bars(f.name, reference, current, labels, chart.get("edges") or [], x_title)


def _bars(
    name: str,
    reference: list[float],
    current: list[float],
    labels: list[str],
    edges: list[float],
    x_title: str,
) -> str:
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(max(reference), max(current)) or 1.0
    slot = width / len(reference)
    bar = slot * 0.4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(name)}: reference '
        'and current shares">'
    ]
    percent = ".0%" if top >= 0.02 else ".2%"
    for tick in (0.0, top / 2, top):  # y axis: gridlines and shares
        y = TOP + height - tick / top * height
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:{percent}}</text>'
        )
    for i, (r, c) in enumerate(zip(reference, current, strict=True)):
        x = LEFT + i * slot + slot * 0.1
        what = labels[i] if labels else f"bin {i + 1}"
        for offset, share, colour, side in (
            (0.0, r, REFERENCE_COLOUR, "reference"),
            (bar, c, CURRENT_COLOUR, "current"),
        ):
            h = share / top * height
            out.append(
                f'<rect x="{x + offset:.1f}" y="{TOP + height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(what)}, {side}: '
                f"{share:.2%}</title></rect>"
            )
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT + width}" y1="{TOP + height}" y2="{TOP + height}" '
        'stroke="#7b8794"/>'
    )
    out += _x_labels(labels, edges, slot, TOP + height)
    out.append(
        f'<text x="{LEFT + width / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{escape(x_title)}</text>"
        f'<text x="14" y="{TOP + height / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + height / 2:.1f})">share of rows</text>'
    )
    legend = LEFT + width - 185
    out.append(
        f'<rect x="{legend}" y="8" width="11" height="11" fill="{REFERENCE_COLOUR}"/>'
        f'<text x="{legend + 15}" y="18">reference</text>'
        f'<rect x="{legend + 110}" y="8" width="11" height="11" fill="{CURRENT_COLOUR}"/>'
        f'<text x="{legend + 125}" y="18">current</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _x_labels(labels: list[str], edges: list[float], slot: float, axis: float) -> list[str]:
    out: list[str] = []
    if labels:  # categories, slanted under their bars, long ones cut (the bar's title has all)
        for i, text in enumerate(labels):
            x = LEFT + (i + 0.5) * slot
            short = text if len(text) <= 14 else text[:13] + "…"
            out.append(
                f'<text x="{x:.1f}" y="{axis + 12}" text-anchor="end" '
                f'transform="rotate(-35 {x:.1f} {axis + 12})">{escape(short)}</text>'
            )
        return out
    if len(edges) >= 2:  # numbers: the first, middle and last edge under their places
        bins = len(edges) - 1
        picks = ((0, "start"), (bins // 2, "middle"), (bins, "end"))
        for i, anchor in picks:
            out.append(
                f'<text x="{LEFT + i * slot:.1f}" y="{axis + 14}" text-anchor="{anchor}">'
                f"{escape(_number(float(edges[i])))}</text>"
            )
    return out
