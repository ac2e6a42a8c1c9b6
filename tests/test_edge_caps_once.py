"""The energy-aware edges' caps are worked out once a cycle (the review leftover of issue 14): in
grid-power (PCC) control both the edges' bound (edges.py) and the PCS's windows (pcc.py) take them,
and they are the same caps: near the floor the plan's bound and the PCS's window close together."""

from __future__ import annotations

import pytest

import agent.control.edges as edges_mod
from agent.control import decide, initial_state
from tests.test_control_pcc import OP, RAMP_CFG, pcc_fleet
from tests.test_control_support import FLAT, snap


def test_one_computation_serves_the_bound_and_the_pcs_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = edges_mod._caps

    def counted(c):  # type: ignore[no-untyped-def]
        calls.append(c.now)
        return real(c)

    monkeypatch.setattr(edges_mod, "_caps", counted)
    # 20.15 % on 12 x 418 kWh: 7.5 kWh above the floor, 2.5 kWh above one register step over it
    cl, pcs = pcc_fleet(soc=20.15)
    s = snap(3e6, clusters=cl, pcs=pcs)
    p, _ = decide(s, initial_state(RAMP_CFG), RAMP_CFG, OP, FLAT, False)
    assert calls == [s.t_mono]
    edge = next(b for b in p.bounds if b.source == "edges")
    gc = p.grid_control
    assert gc is not None
    # 2.508 kWh x 0.96 = 8.668 MJ ramped out at 150 kW/s (0.75 x the limit) in 1 s cycles:
    # P = (sqrt(150e3^2 + 8 x 150e3 x 8.668e6) - 150e3) / 2 = 1.539 MW, inside the fleet's 2.5 MW
    assert edge.hi_w == pytest.approx(1.5393e6, rel=1e-4)
    # the PCS's windows, scaled to the same discharge cap the plan's bound holds
    assert sum(x.max_discharge_w for x in gc.pcs.values()) == pytest.approx(edge.hi_w)
