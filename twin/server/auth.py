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

from twin.core.errors import TwinError

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

        def add(where: str, user, role, token) -> None:
            # errors name the entry by position, never by its fields: a misordered entry puts a token anywhere
            if not all(isinstance(field, str) and field for field in (user, role, token)):
                raise TwinError(f"{where}: user, role and token must all be non-empty text")
            if role not in ROLES:
                raise TwinError(f"{where}: the role must be one of {', '.join(ROLES)}")
            if len(token) < 16:
                raise TwinError(f"{where}: the token must be at least 16 characters")
            tokens[token] = Principal(user, role)

        if path is not None:
            try:
                entries = json.loads(Path(path).read_text())["tokens"]
                if not isinstance(entries, list):
                    raise TypeError("'tokens' is not a list")
            except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
                raise TwinError(f"{path}: not a tokens file ({error})") from None
            for position, entry in enumerate(entries, start=1):
                fields = entry if isinstance(entry, dict) else {}
                add(f"{path}: token entry {position}", fields.get("user"), fields.get("role"), fields.get("token"))
        for position, item in enumerate(os.environ.get("TWIN_TOKENS", "").split(","), start=1):
            if not item.strip():
                continue
            parts = item.strip().split(":", 2)
            if len(parts) != 3:
                raise TwinError(f"TWIN_TOKENS entry {position}: expected user:role:token "
                                f"(found {len(parts)} field(s))")
            add(f"TWIN_TOKENS entry {position}", *parts)
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
