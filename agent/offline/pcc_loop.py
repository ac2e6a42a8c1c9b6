"""What a PCS's own grid-power (PCC) loop leaves on the grid by itself: its response to the load alone.

In grid-power control the agent hands the PCS a grid reference that moves at a ramp (agent.control.pcc);
the PCS's local loop then holds the grid on it, but with the response of a sampled loop: it reads
the meter every sample period, acts on the reading one sample old and moves its output through its
first-order lag. The loop is linear (simulators.physics.Pcs.sample), so the grid it leaves is

    grid = reference + H(load - reference) ~ reference + H(load)

where H is the loop's error response: a load change S leaves S x T_loop of energy on the grid
before the loop has caught it (the simulator's default loop, a 20 ms sample and tau 0.1 s,
critically damped: T_loop = 60 ms, tests/test_pcc_loop.py), which the meter's 1 s average shows as
a bump of up to S x T_loop in the second of the change and its return in the next: a change of
more than limit / T_loop (3.3 MW at 200 kW/s) within a second is more than any such PCS can hold.
H(reference) is small (a reference moving at 100 kW/s lags by 6 kW). The first term is the agent's
choice; H(load) is the PCS's and the load's alone: no reference that does not foresee the load can
cancel it.

`loop_residual` computes H(load): the grid minus the reference of that same PCS model (the
simulator's, through the same code) with its reference held still and no power or energy limit.
A second in which H(load)'s 1 s average moves by more than the ramp limit is beyond what a PCS
with that response can hold (bench/ramp_bench.py counts those apart, as it counts the seconds with
the battery at its power limit). Without limits the modelled loop is never slower than the real
one: where a real PCS's command saturates at its rating (a step larger than its rating / gain) it
reaches the new level later, so this errs toward counting fewer seconds apart, not more.
`held_reference_change` counts that: the change of two seconds the same PCS, its output within the
battery's power and starting from the battery's power then, leaves with its reference held still;
what a second moved beyond it is the reference's part.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulators.physics import BatteryPlant, ClusterParams, PccCommand

FloatArray = npt.NDArray[np.float64]

_UNBOUNDED = 1e15  # W and Wh: a PCS and cluster no load comes near (the loop's response, not its limits)


def _pcs_plant(tau_s: float, sample_s: float, gain: float | None, rated_w: float) -> BatteryPlant:
    """One PCS of `rated_w` on cells no load empties or fills, in grid-power control's loop model."""
    cells = ClusterParams(
        capacity_wh=_UNBOUNDED, resistance_ohm=0.0, thermal_j_per_k=_UNBOUNDED, eta_charge=1.0, eta_discharge=1.0
    )
    return BatteryPlant.build(
        {"pcs": (rated_w, ["cells"])},
        cells,
        50.0,
        tau_s=tau_s,
        revert_s=0.0,
        noise=False,
        pcc_sample_s=sample_s,
        pcc_gain=gain,
    )


def _grid(plant: BatteryPlant, load_w: FloatArray, step_s: float) -> FloatArray:
    out = np.empty(len(load_w))
    step = plant.step
    for k, w in enumerate(load_w.tolist()):
        out[k] = w - step(None, step_s, None, w)
    return out


def loop_residual(
    load_w: FloatArray, step_s: float, tau_s: float, sample_s: float, gain: float | None = None
) -> FloatArray:
    """The grid minus the PCS's reference, per load step (`step_s` apart), for a PCS with response time
    `tau_s`, meter sample period `sample_s` and loop gain `gain` (None: critically damped) in
    grid-power control with its reference held at the first load value and no limits."""
    if len(load_w) == 0:
        return np.zeros(0)
    if not np.all(np.isfinite(load_w)):
        raise ValueError("loop_residual: load_w has a value that is not a finite number")
    plant = _pcs_plant(tau_s, sample_s, gain, _UNBOUNDED)
    ref = float(load_w[0])
    # ramp 0: the reference stays where the loop's first meter sample puts it, the first load value
    plant.write_pcc("pcs", PccCommand(ref, 0.0, 1.0, _UNBOUNDED, _UNBOUNDED, -_UNBOUNDED))
    return _grid(plant, load_w, step_s) - ref


def held_reference_change(
    load_w: FloatArray,
    battery0_w: float,
    step_s: float,
    power_w: float,
    tau_s: float,
    sample_s: float,
    gain: float | None = None,
) -> float:
    """The change between the 1 s averages of the first two seconds of `load_w` (W per s, signed) that
    the PCS would leave with its reference held where the grid is at their start: starting settled at
    `battery0_w` (the battery's power then), its output within +-`power_w` (its power: where the loop
    asks for more, as after a drop of more than the battery's headroom, it reaches the new level
    later than loop_residual's unlimited loop, and more of the second is the PCS's).

    What is left of a second's change when the reference does not move: beyond the limit, no
    reference held still could have kept it within, and the reference's own part is the rest."""
    per_s = max(1, round(1.0 / step_s))
    if len(load_w) < 2 * per_s or not np.all(np.isfinite(load_w[: 2 * per_s])):
        raise ValueError("held_reference_change: load_w needs two seconds of finite values")
    if not (np.isfinite(battery0_w) and power_w > 0.0):
        raise ValueError(f"held_reference_change: battery0_w {battery0_w!r} and power_w {power_w!r} W")
    plant = _pcs_plant(tau_s, sample_s, gain, power_w)
    b0 = min(power_w, max(-power_w, battery0_w))
    pcs = plant.pcs["pcs"]
    pcs.power_w = pcs.setpoint_w = b0  # settled there: the mode starts its loop from this output
    plant.write_pcc("pcs", PccCommand(float(load_w[0]) - b0, 0.0, 1.0, power_w, power_w, -_UNBOUNDED))
    g = _grid(plant, load_w[: 2 * per_s], step_s)
    return float(g[per_s:].mean() - g[:per_s].mean())


def second_changes(w: FloatArray, step_s: float) -> FloatArray:
    """The change between consecutive 1 s averages of `w` (sampled `step_s` < 1 s apart, averaged in
    whole seconds from its start, as agent.model.ramp_metrics does), signed, W per s."""
    if not 0.0 < step_s < 1.0:
        raise ValueError(f"second_changes: step_s must be within (0, 1) s, got {step_s!r}")
    per_s = max(1, round(1.0 / step_s))
    n = len(w) // per_s
    return np.diff(w[: n * per_s].reshape(n, per_s).mean(axis=1))
