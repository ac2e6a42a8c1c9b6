"""Read-only endpoints (viewer role, or open when `[api] open_read = true`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from agent.live.hub import CycleRecord

from .auth import Principal, Role
from .context import Ctx
from .models import (
    AlarmsOut,
    ClusterOut,
    CycleOut,
    DemandOut,
    DeviceOut,
    HistoryOut,
    LiveOut,
    OperatorOut,
    PcsOut,
    Problem,
    RampOut,
    SiteOut,
    WhoAmI,
)
from .views import alarm_out, clusters_out, operator_out, pcs_list_out, site_out

NO_CYCLE = "no control cycle has completed yet"


def read_router(ctx: Ctx) -> APIRouter:
    viewer = Depends(ctx.require(Role.VIEWER))
    r = APIRouter(prefix="/api", dependencies=[viewer], responses={401: {"model": Problem}, 503: {"model": Problem}})
    hub = ctx.hub

    def latest() -> CycleRecord:
        if hub.latest is None:
            raise HTTPException(503, NO_CYCLE)
        return hub.latest

    @r.get("/whoami", response_model=WhoAmI, summary="The caller's name and role")
    def whoami(who: Principal = viewer) -> WhoAmI:
        return WhoAmI(name=who.name, role=who.role.name.lower())

    @r.get("/site", response_model=SiteOut, summary="Power flows, SoC, mode and the active constraint")
    def site() -> SiteOut:
        return site_out(latest(), hub.operator, hub.alarms.active())

    @r.get("/live", response_model=LiveOut, summary="Everything the dashboard shows, as one cycle")
    def live() -> LiveOut:
        return ctx.obs.live(latest())

    @r.get("/clusters", response_model=list[ClusterOut], summary="Every battery cluster")
    def clusters() -> list[ClusterOut]:
        return clusters_out(latest(), hub.operator)

    @r.get("/clusters/{cluster_id}", response_model=ClusterOut, responses={404: {"model": Problem}})
    def cluster(cluster_id: str) -> ClusterOut:
        for c in clusters_out(latest(), hub.operator):
            if c.id == cluster_id:
                return c
        raise HTTPException(404, f"unknown cluster {cluster_id!r}")

    @r.get("/pcs", response_model=list[PcsOut], summary="Every PCS unit")
    def pcs() -> list[PcsOut]:
        return pcs_list_out(latest())

    @r.get("/devices", response_model=list[DeviceOut], summary="Configured devices and their comm health")
    def devices() -> list[DeviceOut]:
        return [
            DeviceOut(
                id=d.id,
                kind=d.kind,
                role=d.role,
                profile=d.profile,
                endpoint=f"{d.host}:{d.port}/{d.unit}",
                health=hub.device_health.get(d.id),
            )
            for d in hub.site.devices
        ]

    @r.get("/alarms", response_model=AlarmsOut, summary="Active alarms and cleared history")
    def alarms(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AlarmsOut:
        return AlarmsOut(
            active=[alarm_out(a) for a in hub.alarms.active()],
            history=[alarm_out(a) for a in hub.alarms.history(limit)],
        )

    @r.get("/demand", response_model=DemandOut, summary="Demand this interval, the month's peak, the target")
    def demand() -> DemandOut:
        return ctx.obs.demand_out()

    @r.get("/ramp", response_model=RampOut, summary="Load vs grid ramp rates over recent cycles")
    def ramp() -> RampOut:
        return ctx.obs.ramp_out()

    @r.get("/history", response_model=HistoryOut, summary="Recent cycles for the rolling chart")
    def history(seconds: Annotated[float, Query(gt=0, le=3600)] = 300) -> HistoryOut:
        return ctx.obs.history(seconds)

    @r.get("/cycle", response_model=CycleOut, summary="Control cycle timing")
    def cycle() -> CycleOut:
        s = hub.stats.summary()
        rec = hub.latest
        return CycleOut(
            cycle_s=hub.site.cycle_s,
            last_cycle_ms=rec.cycle_ms if rec else None,
            last_poll_ms=rec.poll_ms if rec else None,
            last_write_ms=rec.write_ms if rec else None,
            p50_ms=s["p50_ms"],
            p99_ms=s["p99_ms"],
            max_ms=s["max_ms"],
            cycles=hub.stats.cycles,
            overruns=hub.stats.overruns,
            last_cycle_age_s=max(0.0, hub.clock() - rec.snapshot.t_mono) if rec else None,
        )

    @r.get("/operator", response_model=OperatorOut, summary="Mode, override, reserve, maintenance in force")
    def operator() -> OperatorOut:
        return operator_out(hub.operator, hub.site, hub.clock())

    @r.get("/audit", summary="Recent operator actions, newest first (accepted and refused)")
    def audit(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return hub.audit.recent(limit)

    def provided(name: str, what: str) -> dict[str, Any]:
        v = hub.read(name)
        if v is None:
            raise HTTPException(503, f"{what} is not available: no {name!r} provider is registered")
        return v

    @r.get("/savings", summary="Realized savings to date (currency, kWh, kW; see the ledger's fields)")
    def savings() -> dict[str, Any]:
        return provided("ledger", "the savings ledger")

    @r.get("/roi", summary="Return on investment: payback, NPV, IRR from realized savings")
    def roi() -> dict[str, Any]:
        return provided("roi", "ROI")

    @r.get("/plan", summary="The dispatch plan: next 24 h of SoC, grid cap and price; its age, solve time, reason")
    def plan() -> dict[str, Any]:
        return provided("plan", "the dispatch plan")

    @r.get("/fast_lane", summary="The fast lane: running or not, its period, ticks, missed, requests, tick ms")
    def fast_lane() -> dict[str, Any]:
        return provided("fast_lane", "the fast lane read-out")

    @r.get("/campus", summary="The campus link: coordinator or fallback, the share in force, its age, refusals")
    def campus() -> dict[str, Any]:
        return provided("campus", "the campus link read-out (the site file has no [campus] table)")

    @r.get("/health", summary="Battery health read-out (SoH trends, outliers)")
    def health() -> dict[str, Any]:
        return provided("health", "the battery health read-out")

    return r
