"""Is a cluster's resistance rise its cells wearing, or its connections / the BMS's estimate? (pure)

A cell whose internal resistance really rose delivers less at the same current: its voltage
sags sooner to the cut-off, so the capacity counted at the site's rate falls with it, and it
heats more. Measured cells bear this out the other way round too: on the CALCE CS2 cells that
age normally, capacity uses its whole margin to end of life (100 -> 80 %, cycles 1-550) while
resistance uses a tenth of its own (+5 %); wear shows in capacity first. So a resistance rise
that the cluster's capacity does not echo is not its cells aging apart from its peers: it is the
path the current takes outside the cells (a busbar or module link loosening: that heats at the
joint) or the BMS's resistance estimate (CALCE CS2_38: +60 mOhm for ~90 cycles, then back under
its start, while its capacity stayed with its three peers', -0.7 to +1.8 points, the whole time).

Both are measured as a share of their margin to the end-of-life limit (`wear_share`: 80 %
capacity, 150 mOhm), so the datasheet says how much capacity a rise is worth. A peer-drift
verdict compares levels with the peers' median levels (`against_peers`: the fleet's common fade
and recoveries cancel); an end-of-life forecast claims a pace, so it compares today's paces
(`against_paces`: a resistance due to use its margin within weeks must see the capacity use a
share of its own in those weeks; no peer needed, like the forecast), and its levels with the
peers' where there are peers (a level at the limit whose rise has stopped claims no pace, yet
is no wear if the capacity stayed with the fleet's: CS2_38 on its plateau). The capacity
corroborates when it has used at least `CORROBORATE_SHARE` of the share the resistance has:
half, a low bar next to the measured cells (where capacity leads by ten times), so real wear
passes and a rise with no echo does not. A cluster whose capacity is not measured cannot
corroborate. `Evidence.apart` says whether a level stands apart from the peers at all: assess
drops a forecast's uncorroborated rise whose level does not (the fit's, not the cluster's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.health.forecast import EolForecast
from agent.health.indicators import DailyIndicators

if TYPE_CHECKING:
    from agent.health.assess import IndicatorRule

CORROBORATE_SHARE = 0.5
LEVEL_DAYS = 3  # a level is the median of this many finite days: one odd day does not move it
LEVEL_ROWS = 14  # ... among this many newest rows (assess.WINDOW_DAYS: the peer verdict's window)


def level(rows: Sequence[DailyIndicators], name: str) -> float:
    """Median of the newest LEVEL_DAYS finite values of indicator `name` (NaN: none)."""
    v = np.array([getattr(r, name) for r in rows[-LEVEL_ROWS:]], dtype=float)
    v = v[np.isfinite(v)][-LEVEL_DAYS:]
    return float(np.median(v)) if len(v) else math.nan


def wear_share(value: float, ref: float, rule: IndicatorRule) -> float:
    """Share of the margin from `ref` to `rule`'s limit that `value` has used (bad direction
    positive). The margin is at least the rule's min_gap: a fleet at its limit is not a
    divide-by-zero."""
    margin = max(rule.worse * (rule.limit - ref), rule.min_gap)
    return rule.worse * (value - ref) / margin


@dataclass(frozen=True, slots=True)
class Evidence:
    """How far a cluster's resistance and capacity have moved, each as a share of its margin to
    end of life, and what an operator reads about it."""

    resistance_share: float
    capacity_share: float  # NaN: the capacity was not measured (it cannot corroborate)
    says: str
    # levels: the resistance is above the reference by the rule's min_gap (the peer verdict's
    # margin); paces: not a level, True
    apart: bool = True

    @property
    def corroborated(self) -> bool:
        """The capacity echoes the resistance rise (or there is no rise to echo)."""
        if self.resistance_share <= 0:
            return True
        return math.isfinite(self.capacity_share) and self.capacity_share >= CORROBORATE_SHARE * self.resistance_share


def against_peers(
    peers: Mapping[str, Sequence[DailyIndicators]],
    cid: str,
    r_rule: IndicatorRule,
    c_rule: IndicatorRule,
    min_peers: int,
) -> Evidence | None:
    """`cid`'s levels against its peers' median levels (relative, like a peer-drift verdict: the
    fleet's common fade and recoveries cancel). None with fewer than `min_peers` resistance levels."""
    levels = {k: (level(rows, r_rule.name), level(rows, c_rule.name)) for k, rows in peers.items()}
    if sum(math.isfinite(r) for r, _ in levels.values()) < min_peers:
        return None
    r_now, c_now = levels[cid]
    r_ref = _median([r for r, _ in levels.values()])
    c_ref = _median([c for _, c in levels.values()])
    says = (
        f"resistance {_num(r_now, 'mΩ')} vs fleet {_num(r_ref, 'mΩ')}, "
        f"capacity {_num(c_now, '%')} vs fleet {_num(c_ref, '%')}"
    )
    apart = r_rule.worse * (r_now - r_ref) >= r_rule.min_gap
    return Evidence(wear_share(r_now, r_ref, r_rule), wear_share(c_now, c_ref, c_rule), says, apart)


def against_paces(
    r_fc: EolForecast, c_fc: EolForecast | None, r_rule: IndicatorRule, c_rule: IndicatorRule
) -> Evidence:
    """Today's paces from the end-of-life forecasts (a forecast claims a pace: a resistance that
    will use its margin in weeks must see the capacity use a share of its own in those weeks;
    the forecast needs no peer, so neither does this)."""
    r_pace = wear_share(r_fc.value + r_fc.slope_per_day, r_fc.value, r_rule)  # share per day
    c_pace = math.nan if c_fc is None else wear_share(c_fc.value + c_fc.slope_per_day, c_fc.value, c_rule)
    says = f"resistance using {100 * r_pace:.2g} % of its margin to {r_rule.limit:g} {r_rule.unit} a day, capacity " + (
        f"{100 * c_pace:.2g} % of its margin to {c_rule.limit:g} {c_rule.unit}"
        if math.isfinite(c_pace)
        else "not measured"
    )
    return Evidence(r_pace, c_pace, says)


def _median(xs: list[float]) -> float:
    v = [x for x in xs if math.isfinite(x)]
    return float(np.median(v)) if v else math.nan


def _num(x: float, unit: str) -> str:
    return f"{x:.4g} {unit}" if math.isfinite(x) else "not measured"
