"""Bearer-token authentication with two roles: viewer (read) and operator (read + control).

Tokens live in a TOML file as SHA-256 digests, never in clear:

    [[token]]
    name = "alice"          # recorded in the audit log as the actor
    role = "operator"       # "viewer" | "operator"
    sha256 = "9f86d08..."   # hex digest of the token (python -m agent.api.auth hash)

A presented token is hashed and compared with every entry in constant time, so neither the
match position nor a prefix leaks through timing. Tokens are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from common.tomlcheck import ConfigError, Table, load_toml


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2


ROLE_NAMES = {"viewer": Role.VIEWER, "operator": Role.OPERATOR}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role


ANONYMOUS_VIEWER = Principal("anonymous", Role.VIEWER)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    def __init__(self, entries: list[tuple[str, Role, str]]) -> None:
        # (name, role, digest as bytes) — bytes so compare_digest works on equal-length inputs.
        self._entries = [(n, r, bytes.fromhex(d)) for n, r, d in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, token: str) -> Principal | None:
        """The principal a token belongs to, or None. Always scans every entry."""
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for name, role, d in self._entries:
            if hmac.compare_digest(presented, d) and found is None:
                found = Principal(name, role)
        return found

    @staticmethod
    def load(path: Path) -> TokenStore:
        """Read a token file. Raises ConfigError naming the file, entry and key."""
        root = Table(load_toml(path), str(path))
        entries: list[tuple[str, Role, str]] = []
        names: set[str] = set()
        for t in root.tables("token"):
            name = t.text("name")
            role = ROLE_NAMES[t.text("role", choices=tuple(ROLE_NAMES))]
            d = t.text("sha256").lower()
            t.done()
            if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
                t.fail("sha256", "must be 64 hex digits (the SHA-256 of the token)")
            if name in names:
                t.fail("name", f"{name!r} is used by another [[token]]")
            names.add(name)
            entries.append((name, role, d))
        root.done()
        if not entries:
            raise ConfigError(f"{path}: no [[token]] entries")
        return TokenStore(entries)


def main(argv: list[str]) -> int:
    """`python -m agent.api.auth new NAME ROLE`: print a fresh token and its [[token]] entry."""
    if len(argv) != 3 or argv[0] != "new" or argv[2] not in ROLE_NAMES:
        print("usage: python -m agent.api.auth new NAME viewer|operator", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    print(f"# token (give it to {argv[1]}; it is not stored): {token}")
    print(f'[[token]]\nname = "{argv[1]}"\nrole = "{argv[2]}"\nsha256 = "{digest(token)}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
