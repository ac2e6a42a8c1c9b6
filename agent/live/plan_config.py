"""The site file's `[planner]` table: predictive dispatch in the running agent (agent/live/planning.py).

    [planner]
    enabled = false          # off by default (see README "Predictive dispatch")
    horizon_h = 24           # forecast and plan this far ahead (h)
    history_days = 14        # the forecast's history window (days of completed demand intervals)
    margin = 1.0             # share of the forecast's spread (p90 - p50) kept under the peak
    time_limit_s = 0.25      # HiGHS's time limit per solve; the control loop never waits on it
    departure_soc_pct = 10   # re-plan mid-interval when the SoC departs this far from the plan

The same settings drive `ems-agent analyze --planner` (agent/cli/analyze.py), so a replay and the
agent plan alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.model.config import SiteConfig
from common.tomlcheck import ConfigError, Table

if TYPE_CHECKING:  # the planner loads scipy / HiGHS: only an agent that plans imports it
    from agent.control.replan import ReplanSettings


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    enabled: bool = False
    horizon_s: float = 86400.0
    history_days: int = 14
    margin: float = 1.0
    time_limit_s: float = 0.25
    departure_soc_pct: float = 10.0

    def settings(self) -> ReplanSettings:
        """The Replanner's settings (agent/control/replan.py)."""
        from agent.control.replan import ReplanSettings

        return ReplanSettings(
            horizon_s=self.horizon_s,
            margin=self.margin,
            history_days=self.history_days,
            time_limit_s=self.time_limit_s,
        )

    def keep_intervals(self, length_s: float) -> int:
        """Completed demand intervals of `length_s` the forecast reads (what the history file keeps)."""
        return int(self.history_days * 86400.0 / length_s) + 1


def parse_planner(site: SiteConfig) -> PlannerConfig:
    """The `[planner]` table (defaults when absent). Raises ConfigError naming the key at fault."""
    t = Table(site.sections.get("planner", {}), f"{site.path} [planner]")
    cfg = PlannerConfig(
        enabled=t.flag("enabled", False),
        horizon_s=t.number("horizon_h", 24.0, lo=1.0, hi=72.0) * 3600.0,
        history_days=t.integer("history_days", 14, lo=1, hi=90),
        margin=t.number("margin", 1.0, lo=0.0, hi=5.0),
        time_limit_s=t.number("time_limit_s", 0.25, lo=0.0, hi=60.0, lo_open=True),
        departure_soc_pct=t.number("departure_soc_pct", 10.0, lo=0.0, hi=100.0, lo_open=True),
    )
    t.done()
    if cfg.enabled and site.tariff_path is None:
        raise ConfigError(
            f"{site.path} [planner]: key 'enabled' needs a tariff ([site] tariff): the plan prices energy and demand"
        )
    return cfg
