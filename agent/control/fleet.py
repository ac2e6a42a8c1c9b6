"""The clusters the policy may command this cycle, with their limits (controllers 1 and 3).

Device limits: a cluster contributes only if the snapshot trusts it (online, good SoC and
limits), no operator holds it in maintenance, and its PCS is trusted with a usable rating.
Per PCS the clusters' BMS limits are capped by the rating. The reserve window (SoC floor and
ceiling) then zeroes discharge for clusters at or below the floor and charge for clusters at
or above the ceiling, per cluster, so dispatch can never drain one cluster under the reserve
while the fleet average looks fine.

Plain parallel lists instead of one object per cluster: this runs every cycle, 2.6 M times in
a month's replay. The offline replay hands in the same tuple of cluster snapshots for as long as
no BMS register changes, so it keeps the last fleet in a FleetMemo and gets it back for the same
(clusters, PCS, maintenance, derate) objects. Snapshots are immutable, and the memo holds them, so
identity means equal.
Operator derating is applied here, not to the snapshot (which keeps what the BMS reported): the
fleet's limits are the BMS limits times the derate of each cluster's PCS (pcs_factors), and it
keeps the totals before the derate (bms_*_w) so the plan shows both.
Callers only ever narrow a fleet through `apply_window`, which recomputes from the device limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from agent.model.snapshot import ClusterSnapshot, ClusterStatus, PcsSnapshot, PcsStatus, SiteSnapshot
from drivers.reading import Quality

_GOOD = Quality.GOOD
_ONLINE = ClusterStatus.ONLINE
_PCS_ONLINE = PcsStatus.ONLINE
_INF = math.inf
_NOT_RAMPING: tuple[float, float | None] = (0.0, None)  # a PCS not ramping out: no way, no scale
NO_COMMANDS: Mapping[str, float] = MappingProxyType({})  # no commands known (a fresh state)


class Fleet:
    __slots__ = (
        "bms_chg_w",
        "bms_dis_w",
        "cap",
        "capacity_wh",
        "chg",
        "chg_w",
        "derated",
        "dis",
        "dis_w",
        "energy_wh",
        "ids",
        "max_chg",
        "max_chg_w",
        "max_dis",
        "max_dis_w",
        "members",
        "pcs_ids",
        "pcs_rated",
        "snap_cluster_ids",
        "snap_pcs_ids",
        "soc",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []  # trusted clusters
        self.soc: list[float] = []  # % (clamped to 0..100)
        self.cap: list[float] = []  # Wh nameplate
        self.max_dis: list[float] = []  # W, the BMS limit (magnitude) as the operator's derate allows
        self.max_chg: list[float] = []
        self.dis: list[float] = self.max_dis  # W after the reserve window (same list until applied)
        self.chg: list[float] = self.max_chg
        self.pcs_ids: list[str] = []  # trusted PCS with at least one trusted cluster
        self.pcs_rated: list[float] = []
        self.members: list[list[int]] = []  # per PCS: indices into the cluster lists
        self.snap_cluster_ids: tuple[str, ...] = ()  # every cluster and PCS of the snapshot, trusted or not
        self.snap_pcs_ids: tuple[str, ...] = ()
        self.capacity_wh = 0.0
        self.energy_wh = 0.0
        self.max_dis_w = 0.0  # fleet totals, PCS-capped (device limits, derated)
        self.max_chg_w = 0.0
        self.bms_dis_w = 0.0  # the same before the operator's derate (what the BMS allow)
        self.bms_chg_w = 0.0
        self.derated: list[tuple[str, float]] = []  # (PCS id, factor < 1) its clusters' limits are scaled by
        self.dis_w = 0.0  # fleet totals after the reserve window
        self.chg_w = 0.0

    @property
    def soc_pct(self) -> float:
        """Capacity-weighted fleet SoC (NaN without trusted clusters)."""
        return 100.0 * self.energy_wh / self.capacity_wh if self.capacity_wh > 0 else math.nan

    def apply_window(self, floor_pct: float, ceil_pct: float) -> None:
        """No discharge at or below `floor_pct`, no charge at or above `ceil_pct` (per cluster)."""
        soc, mdis, mchg = self.soc, self.max_dis, self.max_chg
        inside = True  # the usual case: every cluster strictly inside the window, nothing to cut
        for s in soc:
            if not (s > floor_pct and s < ceil_pct):  # (a NaN bound cuts, as before)
                inside = False
                break
        if inside:
            self.dis, self.chg, self.dis_w, self.chg_w = mdis, mchg, self.max_dis_w, self.max_chg_w
            return
        self.dis = [d if s > floor_pct else 0.0 for d, s in zip(mdis, soc, strict=True)]
        self.chg = [c if s < ceil_pct else 0.0 for c, s in zip(mchg, soc, strict=True)]
        dis_w = chg_w = 0.0
        for j in range(len(self.members)):
            sd, sc = self.pcs_window_w(j)
            dis_w += sd
            chg_w += sc
        self.dis_w, self.chg_w = dis_w, chg_w

    def pcs_window_w(self, j: int) -> tuple[float, float]:
        """(discharge, charge) W that PCS j may do in the current window: its clusters, capped by its rating."""
        r = self.pcs_rated[j]
        sd = sc = 0.0
        for i in self.members[j]:
            sd += self.dis[i]
            sc += self.chg[i]
        return (sd if sd < r else r), (sc if sc < r else r)


class FleetMemo:
    """The last fleet built and what it was built from, for a caller that hands decide() the same
    snapshot objects again and again (the offline replay; the live loop has a new snapshot every
    cycle and passes none). Owned by that caller, so decide() itself keeps no hidden state."""

    __slots__ = ("clusters", "derate", "fleet", "maintenance", "pcs")

    def __init__(self) -> None:
        self.clusters: tuple[ClusterSnapshot, ...] = ()
        self.pcs: tuple[PcsSnapshot, ...] = ()
        self.maintenance: frozenset[str] = frozenset()
        self.derate: tuple[tuple[str, float], ...] = ()
        self.fleet: Fleet | None = None


def build_fleet(
    snap: SiteSnapshot,
    maintenance: frozenset[str],
    memo: FleetMemo | None = None,
    derate: tuple[tuple[str, float], ...] = (),
    ramp_out_w: float = 0.0,
    last_pcs_w: Mapping[str, float] = NO_COMMANDS,
    last_cluster_w: Mapping[str, float] = NO_COMMANDS,
) -> Fleet:
    """The fleet of `snap` without the clusters in `maintenance`, their limits scaled by `derate`
    ((cluster id, max power %): OperatorState.derate; see pcs_factors). `ramp_out_w` > 0: a PCS held
    for an isolation ramps out by that much a cycle from the lowest of its measured output, its
    command read back and its command the previous cycle planned (`last_pcs_w`), each of its clusters
    from its own (`last_cluster_w`; see _build)."""
    if memo is None or (ramp_out_w > 0.0 and _held_pcs(snap, maintenance)):  # a ramp-out follows the readings
        return _build(snap, maintenance, derate, ramp_out_w, last_pcs_w, last_cluster_w)
    mf = memo.fleet
    if (
        mf is not None
        and snap.clusters is memo.clusters
        and snap.pcs is memo.pcs
        and (maintenance is memo.maintenance or maintenance == memo.maintenance)
        and (derate is memo.derate or derate == memo.derate)
    ):
        mf.dis, mf.chg, mf.dis_w, mf.chg_w = mf.max_dis, mf.max_chg, mf.max_dis_w, mf.max_chg_w
        return mf
    f = _build(snap, maintenance, derate, ramp_out_w)
    memo.clusters, memo.pcs, memo.maintenance, memo.derate, memo.fleet = (
        snap.clusters,
        snap.pcs,
        maintenance,
        derate,
        f,
    )
    return f


def pcs_factors(snap: SiteSnapshot, derate: tuple[tuple[str, float], ...]) -> dict[str, float]:
    """PCS id -> the lowest derate factor (max power % / 100) of the clusters behind it, where < 1.

    A PCS drives its clusters on one DC bus and shares its power among them by their BMS limits,
    so capping one cluster means capping its PCS: every cluster behind it gets that factor.
    """
    out: dict[str, float] = {}
    for p in snap.pcs:
        low = 1.0
        for cid in p.cluster_ids:
            for dc, pct in derate:
                if dc == cid and pct / 100.0 < low:
                    low = pct / 100.0
        if low < 1.0:
            out[p.id] = low
    return out


def _held_pcs(snap: SiteSnapshot, maintenance: frozenset[str]) -> set[str]:
    """PCS with a cluster being isolated: held in maintenance, its contactor still closed (it reports
    itself online) and the agent able to open it."""
    return {c.pcs_id for c in snap.clusters if c.switchable and c.id in maintenance and c.status is _ONLINE}


def _build(
    snap: SiteSnapshot,
    maintenance: frozenset[str],
    derate: tuple[tuple[str, float], ...],
    ramp_out_w: float = 0.0,
    last_pcs_w: Mapping[str, float] = NO_COMMANDS,
    last_cluster_w: Mapping[str, float] = NO_COMMANDS,
) -> Fleet:
    f = Fleet()
    f.snap_cluster_ids = tuple([c.id for c in snap.clusters])
    f.snap_pcs_ids = tuple([p.id for p in snap.pcs])
    pcs_index: dict[str, int] = {}
    rated: dict[str, float] = {}
    # A PCS drives all its clusters on one DC bus: while one of them is being isolated (held in
    # maintenance, its contactor still closed: it reports itself online, and the agent can open it),
    # the whole PCS is held at 0 W so the contactor opens without load.
    held = _held_pcs(snap, maintenance)
    # With ramp support on (`ramp_out_w`: the ramp step a cycle), a held PCS still giving or taking
    # power is ramped out first rather than dropped at once (a step of its output on the grid): it
    # stays commandable with all its clusters (the one being isolated is still on its DC bus), its
    # rating capped at its output less one step, so their shares reach 0 W at the ramp and the
    # contactor (opened only once the current has died away) follows. Without a good reading of its
    # output it is held at once, as before.
    ramping: dict[str, float] = {}
    # per PCS ramping out: the way it was going (+1 discharging, -1 charging) and the ratio its
    # clusters are scaled down by this cycle (None: no command of its own last cycle to scale)
    ramp_way: dict[str, tuple[float, float | None]] = {}
    if ramp_out_w > 0.0 and held:
        for p in snap.pcs:
            if p.id in held and p.power_w.quality is _GOOD:
                # from the lowest of its output, its command read back and the command this agent
                # planned for it the cycle before: an output or a read-back still above the last
                # command (the PCS's lag; a read from before the last write landed) would otherwise
                # leave the cap above what the dispatch asks, and the command would hold or rise
                # instead of stepping down every cycle
                pw = p.power_w.value
                base = abs(pw)
                sp = p.setpoint_w
                if sp.quality is _GOOD and abs(sp.value) < base:
                    base = abs(sp.value)
                last = last_pcs_w.get(p.id)
                if last is not None and abs(last) < base:
                    base = abs(last)
                out = base - ramp_out_w
                if out > 0.0 and out < _INF:
                    ramping[p.id] = out
                    # the way it was going: a ramp-out never turns round (a PCS discharging at 116 kW
                    # that the dispatch then charged at 1.4 kW, the soak: a command to a cluster
                    # being isolated, and a step through zero)
                    sign = 1.0 if (last if last is not None and last != 0.0 else pw) > 0.0 else -1.0
                    scale: float | None = None
                    if last is not None and abs(last) > out:
                        # every cluster on its DC bus scaled down alike: capped at the PCS's cap
                        # alone, a cluster at its BMS limit kept it (and followed the limit up)
                        # while the others took all the step (the soak: c02 in maintenance
                        # 215,687 -> 215,875 -> 216,048 W)
                        scale = out / abs(last)
                    ramp_way[p.id] = (sign, scale)
        held = held.difference(ramping)
    factor = pcs_factors(snap, derate) if derate else {}
    raw_dis: list[float] = []  # per trusted cluster, the BMS limits before the derate (only while one applies)
    raw_chg: list[float] = []
    for p in snap.pcs:
        r = p.rated_w
        if p.status is _PCS_ONLINE and 0.0 < r < _INF and p.id not in pcs_index and p.id not in held:
            pcs_index[p.id] = -1  # known and trusted; gets a slot once a cluster joins it
            rated[p.id] = r if p.id not in ramping or ramping[p.id] > r else ramping[p.id]
    ids, soc, cap, mdis, mchg = f.ids, f.soc, f.cap, f.max_dis, f.max_chg
    members, pcs_ids, pcs_rated = f.members, f.pcs_ids, f.pcs_rated
    energy = capacity = 0.0
    n = 0
    for c in snap.clusters:
        if c.status is not _ONLINE or (c.id in maintenance and c.pcs_id not in ramping):
            continue
        slot = pcs_index.get(c.pcs_id)
        if slot is None:
            continue
        s, mc, md, cw = c.soc_pct, c.max_charge_w, c.max_discharge_w, c.capacity_wh
        sv, cv, dv = s.value, mc.value, md.value
        # chained comparisons reject NaN and +-inf as well as out-of-range values
        if not (
            s.quality is _GOOD
            and mc.quality is _GOOD
            and md.quality is _GOOD
            and -_INF < sv < _INF
            and -_INF < cv < _INF
            and -_INF < dv < _INF
            and 0.0 < cw < _INF
        ):
            continue
        if slot < 0:
            slot = len(pcs_ids)
            pcs_index[c.pcs_id] = slot
            pcs_ids.append(c.pcs_id)
            pcs_rated.append(rated[c.pcs_id])
            members.append([n])
        else:
            members[slot].append(n)
        n += 1
        if ramp_way:
            way, k = ramp_way.get(c.pcs_id, _NOT_RAMPING)
            if way > 0.0:
                cv = 0.0
            elif way < 0.0:
                dv = 0.0
            lc = last_cluster_w.get(c.id) if k is not None else None
            if k is not None and lc is not None:
                m = abs(lc) * k
                if way > 0.0 and dv > m:
                    dv = m
                elif way < 0.0 and cv > m:
                    cv = m
        if factor:
            raw_dis.append(dv if dv > 0.0 else 0.0)
            raw_chg.append(cv if cv > 0.0 else 0.0)
            fc = factor.get(c.pcs_id, 1.0)
            if fc < 1.0:
                dv, cv = dv * fc, cv * fc
        sv = 0.0 if sv < 0.0 else 100.0 if sv > 100.0 else sv
        ids.append(c.id)
        soc.append(sv)
        cap.append(cw)
        mdis.append(dv if dv > 0.0 else 0.0)
        mchg.append(cv if cv > 0.0 else 0.0)
        energy += cw * sv
        capacity += cw
    f.energy_wh = energy * 0.01
    f.capacity_wh = capacity
    dis_w, chg_w = _capped_totals(members, pcs_rated, mdis, mchg)
    f.max_dis_w = f.dis_w = dis_w
    f.max_chg_w = f.chg_w = chg_w
    f.bms_dis_w, f.bms_chg_w = dis_w, chg_w
    if factor:
        f.derated = sorted((pid, fc) for pid, fc in factor.items() if pid in pcs_ids)
        f.bms_dis_w, f.bms_chg_w = _capped_totals(members, pcs_rated, raw_dis, raw_chg)
    return f


def _capped_totals(
    members: list[list[int]], rated: list[float], dis: list[float], chg: list[float]
) -> tuple[float, float]:
    """(discharge, charge) W of the fleet: per PCS its clusters' limits, capped by its rating."""
    dis_w = chg_w = 0.0
    for idx, r in zip(members, rated, strict=True):
        sd = sc = 0.0
        for i in idx:
            sd += dis[i]
            sc += chg[i]
        dis_w += sd if sd < r else r
        chg_w += sc if sc < r else r
    return dis_w, chg_w
