"""Control endpoints (operator role). Every command goes through Hub.submit, which validates,
bounds, audits and applies it: the same rules as the MQTT command channel. A refused command
answers 4xx with the reason naming the field, and changes nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from agent.operator import CommandError, parse_command

from .auth import Principal, Role
from .context import Ctx
from .models import ControlOut, DerateReq, MaintenanceReq, ModeReq, OverrideReq, Problem, ReserveReq
from .views import operator_out

# Fields that name a path resource: refusing them is "not found", not "bad request".
_PATH_FIELDS = ("cluster_id", "alarm")
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

    def submit(who: Principal, payload: dict[str, Any]) -> ControlOut:
        try:
            cmd = parse_command(payload)
        except CommandError as e:
            # Refused before it became a command: still an action someone tried, so audit it.
            hub.audit.record(ctx.wall(), who.name, "api", payload, False, str(e))
            raise HTTPException(400, str(e)) from None
        try:
            state = hub.submit(cmd, who.name, "api", ctx.wall())
        except CommandError as e:
            raise HTTPException(404 if e.field in _PATH_FIELDS else 400, str(e)) from None
        return ControlOut(accepted=True, operator=operator_out(state, hub.site, hub.clock()))

    @r.post("/mode", response_model=ControlOut, summary="Set the operating mode (auto, idle, conservative)")
    def mode(body: ModeReq, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "set_mode", **body.model_dump()})

    @r.post(
        "/override", response_model=ControlOut, summary="Hold a battery setpoint (W) until it expires (s)"
    )
    def override(body: OverrideReq, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "override", **body.model_dump()})

    @r.delete("/override", response_model=ControlOut, summary="End the override now")
    def clear_override(who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "clear_override"})

    @r.post("/reserve", response_model=ControlOut, summary="Change the backup reserve (W for minutes)")
    def reserve(body: ReserveReq, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "set_reserve", **body.model_dump()})

    @r.post(
        "/clusters/{cluster_id}/maintenance",
        response_model=ControlOut,
        summary="Isolate a cluster for maintenance (on=true) or return it to service (on=false)",
    )
    def maintenance(cluster_id: str, body: MaintenanceReq, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "maintenance", "cluster_id": cluster_id, "on": body.on})

    @r.post(
        "/clusters/{cluster_id}/derate",
        response_model=ControlOut,
        summary="Cap a cluster (and its PCS, which drives it) at a share of its BMS limits; 100 lifts it",
    )
    def derate(cluster_id: str, body: DerateReq, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "derate", "cluster_id": cluster_id, "max_power_pct": body.max_power_pct})

    @r.post("/alarms/{alarm_id}/ack", response_model=ControlOut, summary="Acknowledge an active alarm")
    def ack(alarm_id: str, who: Principal = operator) -> ControlOut:
        return submit(who, {"command": "ack_alarm", "alarm": alarm_id})

    return r
