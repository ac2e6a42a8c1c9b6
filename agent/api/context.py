"""Per-app state shared by the routes, and the auth dependencies built on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from .auth import ANONYMOUS_VIEWER, Principal, Role, TokenStore
from .mirror import Mirror
from .observer import Observer


@dataclass
class Access:
    """Who may do what: bearer tokens and whether reads are open (also the fleet view's, agent/fleet)."""

    tokens: TokenStore | None  # None: no token file, so control is impossible
    open_read: bool

    def principal(self, request: Request) -> Principal | None:
        """Who presents this request's bearer token (None: no token). 401 for a bad token."""
        h = request.headers.get("authorization")
        if h is None:
            return None
        scheme, _, token = h.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("Authorization header must be 'Bearer <token>'")
        who = self.tokens.check(token.strip()) if self.tokens is not None else None
        if who is None:
            raise _unauthorized("unknown token")
        return who

    def require(self, role: Role) -> Callable[[Request], Principal]:
        def dep(request: Request) -> Principal:
            who = self.principal(request)
            if who is None:
                if role is Role.VIEWER and self.open_read:
                    who = ANONYMOUS_VIEWER
                else:
                    raise _unauthorized("a bearer token is required")
            if who.role < role:
                raise HTTPException(403, f"{who.name!r} is a {who.role.name.lower()}; this needs {role.name.lower()}")
            request.state.actor = who.name  # for auditing refused request bodies
            return who

        return dep


@dataclass
class Ctx(Access):
    hub: Mirror  # the control process's state, as mirrored into this (the API) process
    obs: Observer


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
