"""Who may do what: bearer tokens with roles viewer < operator < admin.

Tokens come from a JSON file (`{"tokens": [{"token": "...", "user": "alice", "role": "operator"}]}`)
or the `TWIN_TOKENS` environment variable (`user:role:token,...`). Without a token a request is
anonymous: a viewer when the server only listens on loopback, refused otherwise, so that a twin
reachable from the network never serves without authentication.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from twin.errors import TwinError

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Principal:
    user: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class AuthError(TwinError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class Access:
    def __init__(self, tokens: dict[str, Principal] | None = None, *, loopback_only: bool = True):
        self.tokens = dict(tokens or {})
        self.loopback_only = loopback_only

    @classmethod
    def load(cls, path: Path | None = None, *, loopback_only: bool = True) -> Access:
        tokens: dict[str, Principal] = {}
        if path is not None:
            try:
                entries = json.loads(Path(path).read_text())["tokens"]
                for entry in entries:
                    tokens[entry["token"]] = Principal(entry["user"], entry["role"])
            except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
                raise TwinError(f"{path}: not a tokens file ({error})") from None
        for position, item in enumerate(os.environ.get("TWIN_TOKENS", "").split(","), start=1):
            if not item.strip():
                continue
            parts = item.strip().split(":", 2)
            if len(parts) != 3 or not all(parts):
                # the entry itself is not echoed: it may hold a token
                raise TwinError(f"TWIN_TOKENS entry {position}: expected "
                                f"user:role:token, none of them empty (found {len(parts)} field(s))")
            user, role, token = parts
            tokens[token] = Principal(user, role)
        for token, principal in tokens.items():
            if principal.role not in ROLES or len(token) < 16:
                raise TwinError(f"token of {principal.user!r}: role must be one of {ROLES} and the token "
                                "at least 16 characters")
        return cls(tokens, loopback_only=loopback_only)

    def issue(self, user: str, role: str) -> str:
        """A new random token for `user` (the demo prints one for its operator)."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = Principal(user, role)
        return token

    def principal(self, authorization: str | None) -> Principal:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or token not in self.tokens:
                raise AuthError(401, "unknown or malformed bearer token")
            return self.tokens[token]
        if not self.loopback_only:
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'")
        return Principal("anonymous", "viewer")

    def require(self, authorization: str | None, role: str) -> Principal:
        principal = self.principal(authorization)
        if not principal.can(role):
            raise AuthError(403, f"{principal.user} is a {principal.role}; this needs the {role} role")
        return principal
