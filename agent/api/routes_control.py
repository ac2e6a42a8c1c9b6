"""Control endpoints (operator role). Every command is sent to the control process, where
Hub.submit validates, bounds, audits and applies it (agent/api/bridge.py): the same rules as the
MQTT command channel. A refused command answers 4xx with the reason naming the field, and
changes nothing. Authentication happens here; the audit records the authenticated name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from .auth import Principal, Role
from .context import Ctx
from .models import ControlOut, DerateReq, MaintenanceReq, ModeReq, OverrideReq, Problem, ReserveReq
from .views import operator_out

CONTROL_PREFIX = "/api/control"


def control_router(ctx: Ctx) -> APIRouter:
    operator = Depends(ctx.require(Role.OPERATOR))
    r = APIRouter(
        prefix=CONTROL_PREFIX,
        tags=["control"],
        responses={
            400: {"model": Problem},
            401: {"model": Problem},
            403: {"model": Problem},
            404: {"model": Problem},
            422: {"description": "request body of the wrong shape"},
        },
    )
    hub = ctx.hub

    async def submit(who: Principal, payload: dict[str, Any]) -> ControlOut:
        rep = await hub.command(who.name, payload)
        if rep.status != 200:
            raise HTTPException(rep.status, rep.detail)
        return ControlOut(accepted=True, operator=operator_out(rep.operator, hub.site, hub.clock()))

    @r.post("/mode", response_model=ControlOut, summary="Set the operating mode (auto, idle, conservative)")
    async def mode(body: ModeReq, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "set_mode", **body.model_dump()})

    @r.post("/override", response_model=ControlOut, summary="Hold a battery setpoint (W) until it expires (s)")
    async def override(body: OverrideReq, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "override", **body.model_dump()})

    @r.delete("/override", response_model=ControlOut, summary="End the override now")
    async def clear_override(who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "clear_override"})

    @r.post("/reserve", response_model=ControlOut, summary="Change the backup reserve (W for minutes)")
    async def reserve(body: ReserveReq, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "set_reserve", **body.model_dump()})

    @r.post(
        "/clusters/{cluster_id}/maintenance",
        response_model=ControlOut,
        summary="Isolate a cluster for maintenance (on=true) or return it to service (on=false)",
    )
    async def maintenance(cluster_id: str, body: MaintenanceReq, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "maintenance", "cluster_id": cluster_id, "on": body.on})

    @r.post(
        "/clusters/{cluster_id}/derate",
        response_model=ControlOut,
        summary="Cap a cluster (and its PCS, which drives it) at a share of its BMS limits; 100 lifts it",
    )
    async def derate(cluster_id: str, body: DerateReq, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "derate", "cluster_id": cluster_id, "max_power_pct": body.max_power_pct})

    @r.post("/alarms/{alarm_id}/ack", response_model=ControlOut, summary="Acknowledge an active alarm")
    async def ack(alarm_id: str, who: Principal = operator) -> ControlOut:
        return await submit(who, {"command": "ack_alarm", "alarm": alarm_id})

    return r
