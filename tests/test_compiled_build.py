"""The optional mypyc build (setup.py, `make fast`) is the same control code: identical replays.

Builds the compiled modules from a copy of this source tree exactly as `make fast` does (setup.py
with EMS_MYPYC=1), then replays the same trace through `agent.offline.replay.replay` in the pure-Python
package and in the compiled one and compares every step's grid import, battery power and SoC, and
the count of steps each controller decided. A module that mypyc cannot compile, or compiles into
different behaviour, fails here rather than on a planner's machine. Takes about a minute of CPU
(the C compile).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process with the package root given on the command line first on sys.path.
REPLAY = r"""
import json, sys
root, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
from dataclasses import replace
from datetime import datetime
import numpy as np
import agent.control.compose as compose
from agent.offline.replay import BUILD, Trace, replay
from agent.model.config import load_site
from agent.economics.tariff import bundled

# 3 h at 1 s across the 21:00 peak -> flat and 22:00 flat -> valley boundaries (Asia/Shanghai), a
# GPU-like load with synchronous swings, job restarts and a slow drift: every controller acts.
t0 = datetime.fromisoformat("2026-07-01T20:00:00+08:00").timestamp()
n = 3 * 3600
rng = np.random.default_rng(5)
k = np.arange(n)
swing = np.where((k // 7) % 2 == 0, 1.6e6, 0.2e6)
restart = np.where((k % 2400) < 300, -1.2e6, 0.0)
load = 2.2e6 + swing + restart + 3e5 * np.sin(k / 1800.0) + rng.normal(0.0, 2e4, n)
site = load_site(root + "/agent/sites/demo.toml").with_clusters(12)
site = replace(site, control=replace(site.control, ramp_limit_w_per_s=200e3))
r = replay(site, bundled("shanghai_ci_two_part"), Trace(t0 + k.astype(float), load))
np.savez(out, grid=r.grid_w, battery=r.battery_w, soc=r.soc_pct)

# the records with hand-written __init__s behave as dataclasses in the compiled build too
import dataclasses, pickle
from agent.model.plan import Bound, Plan
from agent.model.snapshot import Measured
b = Bound("reserve", -1.0, 2.0, "why")
p = Plan(3, "auto", 1.0, 2.0, "reserve", "r", (b,), {"p1": 1.0}, {"c1": 1.0})
try:
    p.seq = 4
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
records = {
    "pickled": pickle.loads(pickle.dumps(p)) == p,
    "replaced": dataclasses.replace(b, lo_w=-3.0) == Bound("reserve", -3.0, 2.0, "why"),
    "defaults": Measured(1.0) == Measured(1.0, Measured(1.0).quality, 0.0) and p.shortfall_w == 0.0,
    "frozen": frozen,
}
print(json.dumps({
    "module": compose.__file__, "build": BUILD, "decided_by": r.decided_by, "alarms": r.alarms, "records": records
}))
"""


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def _python(args: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str:
    """Run this interpreter in `cwd`; its stdout, asserting it exited 0 (the output's tail otherwise)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def _replay(root: Path, out: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    stdout = _python(["-c", REPLAY, str(root), str(out)], root, env, 600)
    info: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return info


@pytest.mark.timeout(900)
def test_mypyc_build_replays_identically(tmp_path: Path) -> None:
    if _compiler() is None:
        pytest.skip("no C compiler: the optional compiled build cannot be made on this machine")
    pytest.importorskip("mypyc.build")
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in ("agent", "drivers", "simulators", "common"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _python(["setup.py", "build_ext", "--inplace"], src, dict(os.environ, EMS_MYPYC="1"), 840)
    compiled = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.so"))
    assert any(p.startswith("agent/control/compose.") for p in compiled), compiled
    assert any(p.startswith("simulators/physics.") for p in compiled), compiled

    fast = _replay(src, tmp_path / "fast.npz")
    pure = _replay(ROOT, tmp_path / "pure.npz")
    assert str(fast["module"]).endswith(".so") and str(fast["module"]).startswith(str(src))
    assert str(pure["module"]).endswith(".py")
    assert (fast["build"], pure["build"]) == ("mypyc", "python")  # what `ems-agent analyze` reports
    assert fast["records"] == pure["records"] == {"pickled": True, "replaced": True, "defaults": True, "frozen": True}

    assert fast["decided_by"] == pure["decided_by"]
    # the trace is built to exercise the ramp, demand and time-of-use controllers
    assert {"ramp", "demand"} <= set(dict(pure["decided_by"])), pure["decided_by"]
    assert fast["alarms"] == pure["alarms"]
    a, b = np.load(tmp_path / "fast.npz"), np.load(tmp_path / "pure.npz")
    for key in ("grid", "battery", "soc"):
        assert np.array_equal(a[key], b[key], equal_nan=True), key
