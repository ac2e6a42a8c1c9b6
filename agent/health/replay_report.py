"""Report of a health replay: per cluster predicted vs true end of life and lead; fleet scores.

Same format as the daily report (agent/health/report.py): Markdown with PNGs next to it and a
self-contained HTML page. Two plots: the capacity trends with the recommended clusters in
colour (the daily report's own plot, over the whole record), and per cluster the end-of-life
interval predicted at the first recommendation against the true end of life.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agent.health.assess import RULES
from agent.health.indicators import DailyIndicators
from agent.health.replay import ClusterSeries
from agent.health.report import finish_png, page_head, plot_png
from agent.health.score import MAX_LEAD, MIN_LEAD, FleetScore

HEADS = (
    "cluster",
    "record",
    "last day",
    "true EOL",
    "first rec",
    "indicator",
    "basis",
    "predicted EOL",
    "interval",
    "lead",
)


def eol_png(sc: FleetScore) -> bytes:
    """Per cluster (sorted by true end of life): the predicted interval and central figure at the
    first recommendation, the true end of life, and the first recommendation's day."""
    fig = Figure(figsize=(7.0, 0.22 * max(len(sc.clusters), 4) + 1.2), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    order = sorted(sc.clusters, key=lambda c: (c.true_eol is None, c.true_eol or c.last_day))
    ax_end = 1.1 * max(c.last_day for c in order)  # an open-ended interval is drawn to here
    for y, c in enumerate(order):
        lo, hi = c.interval
        if not math.isnan(lo):
            ax.plot([lo, min(hi, ax_end)], [y, y], color="tab:blue", lw=3, alpha=0.5)
        if math.isfinite(c.predicted_eol):
            ax.plot([c.predicted_eol], [y], "o", color="tab:blue", ms=4)
        if c.first_rec_day is not None:
            ax.plot([c.first_rec_day], [y], "|", color="tab:orange", ms=9, mew=2)
        if c.true_eol is not None:
            ax.plot([c.true_eol], [y], "x", color="tab:red", ms=6)
        else:
            ax.plot([c.last_day], [y], ">", color="0.5", ms=5)
    ax.plot([], [], color="tab:blue", lw=3, alpha=0.5, label="predicted interval")
    ax.plot([], [], "o", color="tab:blue", ms=4, label="predicted (central)")
    ax.plot([], [], "|", color="tab:orange", ms=9, mew=2, label="first recommendation")
    ax.plot([], [], "x", color="tab:red", ms=6, label="true end of life")
    ax.plot([], [], ">", color="0.5", ms=5, label="record ends (censored)")
    ax.set_yticks(range(len(order)), [c.cluster_id for c in order], fontsize=6)
    title = "end of life: predicted at the first recommendation vs true"
    return finish_png(fig, ax, title, legend_size=6, legend_loc="lower right")


def _cells(sc: FleetScore) -> list[list[str]]:
    rows = []
    for c in sc.clusters:
        lo, hi = c.interval
        rows.append(
            [
                c.cluster_id, c.source_id, str(c.last_day), _int(c.true_eol), _int(c.first_rec_day),
                c.indicator or "-", c.basis or "-", f"{c.predicted_eol:.0f}" if math.isfinite(c.predicted_eol) else "-",
                f"{lo:.0f}-{hi:.0f}" if not math.isnan(lo) else "-", _int(c.lead),
            ]
        )  # fmt: skip
    return rows


def _int(x: int | None) -> str:
    return "-" if x is None else str(x)


def _fleet(sc: FleetScore) -> list[str]:
    leads = sc.leads
    return [
        f"Spearman rank correlation, predicted vs true end of life: {sc.spearman:.3f}",
        "True end of life inside the interval given at the first recommendation: {} of {}".format(*sc.covered),
        f"First {sc.n_first} to fail flagged before any other: {'yes' if sc.first_flagged_first else 'no'}",
        f"Lead of the first recommendation (target {MIN_LEAD}-{MAX_LEAD} days): "
        + (f"{min(leads)}-{max(leads)} days" if leads else "-"),
        f"False alarms: {len(sc.false_alarms)}" + "".join(f"; {x}" for x in sc.false_alarms),
        f"Misses: {len(sc.misses)}" + "".join(f"; {x}" for x in sc.misses),
        f"Connection findings (a resistance rise the capacity does not echo; not wear, not scored): "
        f"{len(sc.connection)}" + "".join(f"; {x}" for x in sc.connection),
    ]


def write_replay_report(
    out_dir: Path,
    title: str,
    series: Sequence[ClusterSeries],
    history: Mapping[str, Sequence[DailyIndicators]],
    sc: FleetScore,
    stem: str = "health-replay",
) -> tuple[Path, Path]:
    """Write `<stem>.md` (+ PNGs next to it) and a self-contained `<stem>.html`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rule = next(r for r in RULES if r.name == "capacity_pct")
    flagged = {c.cluster_id for c in sc.clusters if c.first_rec_day is not None}
    pngs = {"capacity": plot_png(rule, history, flagged, plot_days=None), "eol": eol_png(sc)}
    for name, png in pngs.items():
        (out_dir / f"{stem}-{name}.png").write_bytes(png)
    md = [f"# {title}", "", *(f"- {x}" for x in _fleet(sc)), "", "## Clusters", ""]
    md += ["| " + " | ".join(HEADS) + " |", "|" + "---|" * len(HEADS)]
    md += ["| " + " | ".join(r) + " |" for r in _cells(sc)]
    censored = [c for c in sc.clusters if not c.scored]
    if censored:
        md += ["", "## Records that stop before end of life (not scored)", ""]
        md += [f"- **{c.cluster_id}** ({c.source_id}, last day {c.last_day}): {c.said}" for c in censored]
    md += ["", "## Plots", "", f"![capacity]({stem}-capacity.png)", f"![end of life]({stem}-eol.png)"]
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    e = html.escape
    h = [page_head(title), "<ul>" + "".join(f"<li>{e(x)}</li>" for x in _fleet(sc)) + "</ul>", "<h2>Clusters</h2>"]
    h.append("<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in HEADS) + "</tr>")
    h += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>" for r in _cells(sc)]
    h.append("</table>")
    if censored:
        h.append("<h2>Records that stop before end of life (not scored)</h2><ul>")
        h += [
            f"<li><b>{e(c.cluster_id)}</b> ({e(c.source_id)}, last day {c.last_day}): {e(c.said)}</li>"
            for c in censored
        ]
        h.append("</ul>")
    h.append("<h2>Plots</h2>")
    for name, png in pngs.items():
        h.append(f"<p><img alt='{e(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'></p>")
    h.append("</body></html>")
    page = out_dir / f"{stem}.html"
    page.write_text("\n".join(h), encoding="utf-8")
    return md_path, page
