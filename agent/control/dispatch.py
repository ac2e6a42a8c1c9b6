"""Split a site battery setpoint over PCS units and their clusters.

Progressive filling: every cluster gets power in proportion to its weight until it reaches
its own limit or its PCS reaches its rating; the rest is shared again among the others, in
the same cycle. Weights are the energy a cluster can still give (discharge) or take (charge)
inside the SoC window, so fuller clusters discharge more and emptier ones charge more and the
SoCs converge. Untrusted clusters and PCS are not in the Fleet, so they can only ever get 0 W.
If the total cannot be met, the best feasible total is dispatched and the shortfall reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.control.fleet import Fleet, build_fleet
from agent.model.snapshot import SiteSnapshot

_TINY_PCT = 0.01  # weight floor (% of capacity): a cluster with a limit but no headroom still shares
_EPS_W = 1e-6


@dataclass(frozen=True, slots=True, init=False)
class Dispatch:
    """One dispatch's result (a hand-written __init__ for the compiled build: see agent/model/snapshot.py)."""

    achieved_w: float  # sum of what was dispatched
    shortfall_w: float  # |asked - achieved|
    pcs_w: dict[str, float]  # every PCS in the snapshot (0 for untrusted ones)
    cluster_w: dict[str, float]  # every cluster in the snapshot (0 for untrusted ones)

    def __init__(
        self, achieved_w: float, shortfall_w: float, pcs_w: dict[str, float], cluster_w: dict[str, float]
    ) -> None:
        object.__setattr__(self, "achieved_w", achieved_w)
        object.__setattr__(self, "shortfall_w", shortfall_w)
        object.__setattr__(self, "pcs_w", pcs_w)
        object.__setattr__(self, "cluster_w", cluster_w)


def _fill(total: float, caps: list[float], weights: list[float], f: Fleet) -> list[float]:
    """Magnitudes x_i >= 0 with x_i <= caps_i, per-PCS sums <= rating, sum = min(total, feasible)."""
    members = f.members
    rated = f.pcs_rated
    # Fast path (most cycles): the plain proportional split already fits every limit.
    wsum = 0.0
    for i, c in enumerate(caps):
        if c > 0.0:
            wsum += weights[i]
    if wsum <= 0.0:
        return [0.0] * len(caps)
    step = total / wsum
    n = len(caps)
    x = [0.0] * n
    for i in range(n):
        if caps[i] > 0.0:
            x[i] = step * weights[i]
    fits = True
    for g, idx in enumerate(members):
        s = 0.0
        for i in idx:
            v = x[i]
            if v > caps[i]:
                fits = False
                break
            s += v
        if not fits or s > rated[g]:
            fits = False
            break
    if fits:
        return x
    return _fill_slow(total, caps, weights, f)


def _fill_slow(total: float, caps: list[float], weights: list[float], f: Fleet) -> list[float]:
    """Progressive filling: raise everyone's share until some cluster or PCS saturates; repeat."""
    n = len(caps)
    x = [0.0] * n
    room = list(caps)
    active = [room[i] > 0.0 for i in range(n)]
    pcs_room = list(f.pcs_rated)
    members = f.members
    remaining = total
    for _ in range(n + len(members) + 1):  # each pass saturates at least one cluster or PCS
        wsum = 0.0
        for i in range(n):
            if active[i]:
                wsum += weights[i]
        if wsum <= 0.0 or remaining <= _EPS_W:
            break
        step = remaining / wsum  # W per unit weight; shrink it to the first saturation
        for i in range(n):
            if active[i]:
                s = room[i] / weights[i]
                if s < step:
                    step = s
        gw: list[float] = []
        for g, idx in enumerate(members):
            w = 0.0
            for i in idx:
                if active[i]:
                    w += weights[i]
            gw.append(w)
            if w > 0.0:
                s = pcs_room[g] / w
                if s < step:
                    step = s
        for g, idx in enumerate(members):
            if gw[g] <= 0.0:
                continue
            for i in idx:
                if active[i]:
                    d = step * weights[i]
                    x[i] += d
                    room[i] -= d
                    if room[i] <= _EPS_W * weights[i] or room[i] <= 0.0:
                        active[i] = False
            pcs_room[g] -= step * gw[g]
            if pcs_room[g] <= _EPS_W:
                for i in idx:
                    active[i] = False
        remaining -= step * wsum
    # Rounding must never leave a cluster above its limit or a PCS above its rating.
    for g, idx in enumerate(members):
        s = 0.0
        for i in idx:
            if x[i] > caps[i]:
                x[i] = caps[i]
            s += x[i]
        r = f.pcs_rated[g]
        if s > r:
            k = r / s
            for i in idx:
                x[i] *= k
    return x


def fill(total: float, caps: list[float], weights: list[float]) -> list[float]:
    """The same progressive filling over plain parts without PCS groups (the campus allocation splits
    battery power over feeders with it): x_i <= caps_i, sum = min(total, sum of caps), in proportion
    to `weights` (each > 0) until a part saturates. `total` >= 0."""
    f = Fleet()
    f.members = [list(range(len(caps)))]
    f.pcs_rated = [math.inf]  # one group that never saturates: only the parts' own caps bind
    return _fill(total, caps, weights, f)


def dispatch_fleet(site_w: float, snap: SiteSnapshot, f: Fleet, floor_pct: float, ceil_pct: float) -> Dispatch:
    """Dispatch within the fleet's current windows (f.dis / f.chg). Weights use floor/ceiling in %."""
    n = len(f.ids)
    soc, cap = f.soc, f.cap
    weights = [0.0] * n  # index loops, not zip(): mypyc compiles them to plain C loops
    if site_w > 0.0:
        caps = f.dis
        for i in range(n):
            h = soc[i] - floor_pct
            weights[i] = (h if h > _TINY_PCT else _TINY_PCT) * cap[i]
        mags = _fill(site_w, caps, weights, f)
        sign = 1.0
    elif site_w < 0.0:
        caps = f.chg
        for i in range(n):
            h = ceil_pct - soc[i]
            weights[i] = (h if h > _TINY_PCT else _TINY_PCT) * cap[i]
        mags = _fill(-site_w, caps, weights, f)
        sign = -1.0
    else:
        mags = weights
        sign = 1.0
    cluster_w = dict.fromkeys(f.snap_cluster_ids, 0.0)
    pcs_w = dict.fromkeys(f.snap_pcs_ids, 0.0)
    achieved = 0.0
    ids = f.ids
    for g, idx in enumerate(f.members):
        s = 0.0
        for i in idx:
            v = sign * mags[i] + 0.0  # + 0.0 turns -0.0 into 0.0
            cluster_w[ids[i]] = v
            s += v
        pcs_w[f.pcs_ids[g]] = s
        achieved += s
    return Dispatch(achieved, abs(site_w - achieved), pcs_w, cluster_w)


def dispatch(
    site_w: float,
    snap: SiteSnapshot,
    maintenance: frozenset[str] = frozenset(),
    floor_pct: float = 0.0,
    ceil_pct: float = 100.0,
) -> Dispatch:
    """Dispatch `site_w` (positive = discharge) over the snapshot's trusted clusters.

    No cluster at or below `floor_pct` discharges and none at or above `ceil_pct` charges.
    decide() calls dispatch_fleet with the fleet it already built; this is the stand-alone form.
    """
    if not math.isfinite(site_w):
        raise ValueError(f"site_w: must be a finite number of watts, got {site_w!r}")
    f = build_fleet(snap, maintenance)
    f.apply_window(floor_pct, ceil_pct)
    return dispatch_fleet(site_w, snap, f, floor_pct, ceil_pct)


def pcs_shares(f: Fleet, floor_pct: float, ceil_pct: float, among: set[str]) -> dict[str, float]:
    """Each PCS in `among` (and in the fleet): its fraction of a grid correction, summing to 1.

    The dispatch weights of its clusters (energy above the floor to give, below the ceiling to
    take, as in dispatch_fleet), as a fraction of those of all PCS in `among`, averaged over the
    two directions: a correction can go either way within one cycle. A direction in which none of
    them has any weight does not count. {} when no PCS in `among` is in the fleet.
    """
    dis: list[float] = []
    chg: list[float] = []
    ids: list[str] = []
    for g, idx in enumerate(f.members):
        pid = f.pcs_ids[g]
        if pid not in among:
            continue
        d = c = 0.0
        for i in idx:
            s, cap = f.soc[i], f.cap[i]
            if f.dis[i] > 0.0:
                d += (h if (h := s - floor_pct) > _TINY_PCT else _TINY_PCT) * cap
            if f.chg[i] > 0.0:
                c += (h if (h := ceil_pct - s) > _TINY_PCT else _TINY_PCT) * cap
        ids.append(pid)
        dis.append(d)
        chg.append(c)
    if not ids:
        return {}
    sd, sc = sum(dis), sum(chg)
    parts = [x for x, tot in ((dis, sd), (chg, sc)) if tot > 0.0]
    if not parts:
        return dict.fromkeys(ids, 1.0 / len(ids))
    tots = [sum(x) for x in parts]
    return {pid: sum(x[j] / t for x, t in zip(parts, tots, strict=True)) / len(parts) for j, pid in enumerate(ids)}
