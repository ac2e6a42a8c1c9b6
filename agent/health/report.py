"""Daily cluster-health report: Markdown and a self-contained HTML page, with trend plots.

Plots use matplotlib's object API on the Agg canvas (no pyplot global state), so the report
can be drawn on the health worker thread while the agent runs. Every cluster is a grey line,
clusters with a recommendation on that indicator are drawn in colour and labelled, and the
fleet median is dashed, with the limit as a red line: a drifting cluster is visible at a glance.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agent.health.assess import RULES, IndicatorRule, Recommendation
from agent.health.indicators import DailyIndicators

PLOTTED = ("cell_spread_mv", "resistance_mohm", "capacity_pct", "soh_pct", "temp_max_c")
PLOT_DAYS = 90
MAX_LABELS = 8  # more flagged clusters than this are drawn in colour but not named in the legend


def plot_png(
    rule: IndicatorRule,
    history: Mapping[str, Sequence[DailyIndicators]],
    flagged: set[str],
    plot_days: int | None = PLOT_DAYS,
) -> bytes:
    """One indicator's trends over the last `plot_days` days (None: all of them)."""
    fig = Figure(figsize=(7.0, 2.6), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    by_day: dict[int, list[float]] = {}
    for cid, rows in sorted(history.items()):
        tail = list(rows)[-plot_days:] if plot_days is not None else list(rows)
        x = [r.day for r in tail]
        y = [getattr(r, rule.name) for r in tail]
        for d, v in zip(x, y, strict=True):
            if math.isfinite(v):
                by_day.setdefault(d, []).append(v)
        if cid in flagged and len(flagged) <= MAX_LABELS:
            ax.plot(x, y, lw=1.8, label=cid, zorder=3)
        elif cid in flagged:  # a whole fleet at end of life: colour without a legend entry each
            ax.plot(x, y, lw=1.0, zorder=3)
        else:
            ax.plot(x, y, lw=0.8, color="0.7", zorder=1)
    if by_day:
        days = sorted(by_day)
        ax.plot(days, [float(np.median(by_day[d])) for d in days], "k--", lw=1.0, label="fleet median", zorder=2)
    ax.axhline(rule.limit, color="tab:red", lw=0.8, ls=":", label=f"limit {rule.limit:g}")
    return finish_png(fig, ax, f"{rule.label} ({rule.unit})", legend_size=7, legend_loc="best")


def finish_png(
    fig: Figure, ax: Axes, title: str, legend_size: int, legend_loc: Literal["best", "lower right"]
) -> bytes:
    """Title, day axis and legend in the report's style; the figure as PNG bytes."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("day", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=legend_size, loc=legend_loc)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(
    out_dir: Path,
    title: str,
    stem: str,
    history: Mapping[str, Sequence[DailyIndicators]],
    recs: Sequence[Recommendation],
) -> tuple[Path, Path]:
    """Write `<stem>.md` (+ PNGs next to it) and a self-contained `<stem>.html`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rules = {r.name: r for r in RULES}
    pngs: dict[str, bytes] = {}
    for name in PLOTTED:
        flagged = {r.cluster_id for r in recs if r.indicator == name}
        pngs[name] = plot_png(rules[name], history, flagged)
        (out_dir / f"{stem}-{name}.png").write_bytes(pngs[name])
    latest = {cid: rows[-1] for cid, rows in sorted(history.items()) if rows}
    cols = ("cell_spread_mv", "resistance_mohm", "capacity_pct", "soh_pct", "temp_max_c", "efc", "alarm_rate")
    heads = ("cluster", "spread mV", "R mΩ", "capacity %", "SoH %", "Tmax °C", "EFC/day", "alarms")

    md = [f"# {title}", ""]
    md.append("## Recommendations" if recs else "## Recommendations\n\nNone: every cluster tracks its peers.")
    md.append("")
    for r in recs:
        md.append(f"- **{r.cluster_id}** ({r.proposal['kind']}): {r.text}")
    md += ["", "## Clusters (latest day)", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for cid, row in latest.items():
        md.append("| " + " | ".join([cid, *(_fmt(getattr(row, c)) for c in cols)]) + " |")
    md += ["", "## Trends", ""]
    md += [f"![{rules[n].label}]({stem}-{n}.png)" for n in PLOTTED]
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    e = html.escape
    h = [page_head(title), "<h2>Recommendations</h2>"]
    if recs:
        h.append("<ul>" + "".join(f"<li class='flag'><b>{e(r.proposal['kind'])}</b>: {e(r.text)}</li>" for r in recs))
        h.append("</ul>")
    else:
        h.append("<p>None: every cluster tracks its peers.</p>")
    h.append("<h2>Clusters (latest day)</h2><table><tr>" + "".join(f"<th>{e(x)}</th>" for x in heads) + "</tr>")
    for cid, row in latest.items():
        h.append("<tr>" + "".join(f"<td>{e(x)}</td>" for x in [cid, *(_fmt(getattr(row, c)) for c in cols)]) + "</tr>")
    h.append("</table><h2>Trends</h2>")
    for n in PLOTTED:
        b64 = base64.b64encode(pngs[n]).decode()
        h.append(f"<p><img alt='{e(rules[n].label)}' src='data:image/png;base64,{b64}'></p>")
    h.append("</body></html>")
    html_path = out_dir / f"{stem}.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return md_path, html_path


def page_head(title: str) -> str:
    """Start of a self-contained report page (the daily report's look), up to its <h1>."""
    e = html.escape(title)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>\n"
        f"<title>{e}</title><style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        f".flag{{color:#b00}}</style></head><body>\n<h1>{e}</h1>"
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "-"
