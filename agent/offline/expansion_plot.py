"""`analyze --growth --plot OUT.png`: the staged plan against day one and no battery, for the owner.

Top: clusters installed each plan year by the staged plan and by day one (bars) and what they
still hold after capacity fade (lines, in nameplate clusters), over the year's load peak.
Bottom: cumulative discounted cash flow of the three plans (where each line ends is its NPV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.offline.expansion import NAMES


def plot_expansion(rep: dict[str, Any], path: Path) -> Path:
    """Write the PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plans = rep["plans"]
    years = [r["year"] for r in plans["staged"]["years"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    for shift, (key, name) in zip((-0.2, 0.2), NAMES[:2], strict=True):
        installed = [r["installed"] for r in plans[key]["years"]]
        top.bar([y + shift for y in years], installed, width=0.4, label=f"{name}: clusters")
        held = [r["held"] for r in plans[key]["years"]]
        # darker than the bars they lie on
        dark = "navy" if key == "staged" else "darkred"
        top.plot([y + shift for y in years], held, "--", color=dark, marker="_", label=f"{name}: held after fade")
    top.set_ylabel("clusters installed")
    peak = top.twinx()
    peak.plot(years, [r["load_peak_kw"] / 1000.0 for r in rep["savings_table"]], "k:", label="load peak")
    peak.set_ylabel("load peak (MW)")
    top.legend(loc="upper left")
    peak.legend(loc="lower right")
    cur = rep["currency"]
    for key, name in NAMES:
        p = plans[key]
        cum = [0.0] + [r["cumulative_discounted"] / 1e6 for r in p["years"]]
        bottom.plot([0, *years], cum, marker="o", markersize=3, label=f"{name}: NPV {p['npv'] / 1e6:,.2f} M {cur}")
    bottom.axhline(0.0, color="grey", linewidth=0.6)
    bottom.set_xlabel("plan year")
    bottom.set_ylabel(f"cumulative discounted cash (M {cur})")
    bottom.legend(loc="upper left")
    top.set_title(f"Staged expansion over {rep['horizon_years']} years, discount rate {rep['discount_rate']:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
