"""The fleet view's HTTP side: GET /api/fleet (every site and the sums), /healthz, and the fleet
page at / (agent/static/fleet.html, with the site dashboard's scripts and styles).

Reads need a viewer token like the agent's API (agent/api/context.py `Access`), unless the
fleet file says `open_read = true`. There is nothing to control here: commands go to each site.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from agent.api.app import STATIC_DIR
from agent.api.auth import Role, TokenStore
from agent.api.context import Access
from agent.fleet.subscriber import FleetState, FleetSubscriber

FLEET_PAGE = STATIC_DIR / "fleet.html"


def create_fleet_app(
    state: FleetState, sub: FleetSubscriber | None, tokens: TokenStore | None, open_read: bool
) -> FastAPI:
    access = Access(tokens=tokens, open_read=open_read)
    app = FastAPI(
        title="ems-agent fleet view",
        version="1",
        description=(
            "Every site's power flow, SoC, alarms and savings to date, and the fleet's sums, from the "
            "agents' MQTT topics. SI units (W, Wh, %); battery positive = discharge; grid positive = import; "
            "savings in each site's currency, summed per currency. Send `Authorization: Bearer <token>`."
        ),
    )

    @app.get("/healthz", tags=["ops"], summary="Liveness and the broker connection (no site data)")
    async def healthz() -> JSONResponse:
        up = sub is None or sub.connected
        return JSONResponse({"status": "ok" if up else "broker_down"}, status_code=200 if up else 503)

    @app.get(
        "/api/fleet",
        tags=["read"],
        summary="Every site (status, age, power flow, SoC, alarms, savings to date) and the sums",
        dependencies=[Depends(access.require(Role.VIEWER))],
    )
    async def fleet() -> dict[str, Any]:
        # async: built on the event loop, where the subscriber updates the sites (a plain `def`
        # would run in a worker thread while a new site is added to the dict it iterates)
        body = state.view()
        body["broker"] = {
            "address": f"{state.cfg.host}:{state.cfg.port}",
            "connected": sub.connected if sub is not None else None,
            "ignored_messages": state.ignored,
            "refused_sites": state.refused_sites,
        }
        return body

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(FLEET_PAGE)

    app.mount("/", StaticFiles(directory=STATIC_DIR), name="static")
    return app
