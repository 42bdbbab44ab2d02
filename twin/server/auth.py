"""Who may do what: bearer tokens with roles viewer < operator < admin.

Tokens come from a JSON file (`{"tokens": [{"token": "...", "user": "alice", "role": "operator"}]}`)
or the `TWIN_TOKENS` environment variable (`user:role:token,...`). Without a token a request is
anonymous: a viewer when the server only listens on loopback, refused otherwise, so that a twin
reachable from the network never serves without authentication.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class TokenEntry(BaseModel):
    """One token of a tokens file or of TWIN_TOKENS. Other keys in a file's entry are ignored (room for notes)."""

    model_config = ConfigDict(strict=True)

    user: str = Field(min_length=1)
    role: str = Field(min_length=1)
    token: str = Field(min_length=1)

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"the role must be one of {', '.join(ROLES)}")
        return role

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: str) -> str:
        if len(token) < 16:
            raise ValueError("the token must be at least 16 characters")
        return token

    @classmethod
    def checked(cls, entry: object, where: str) -> TokenEntry:
        """The entry validated; errors name it by `where` and never quote a field, since a misordered entry puts
        a token in any of them. A missing or empty field is reported before a wrong role or a short token."""
        try:
            return cls.model_validate(entry)
        except ValidationError as error:
            first = min(error.errors(include_url=False), key=lambda problem: problem["type"] == "value_error")
            reason = (str(first["ctx"]["error"]) if first["type"] == "value_error"
                      else "user, role and token must all be non-empty text")
            raise TwinError(f"{where}: {reason}") from None


class TokensFile(BaseModel):
    tokens: list[object]


def _file_problem(error: ValidationError) -> str:
    """Why a file is not a tokens file, without its content (pydantic's own text quotes the input)."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"invalid JSON: {first.get('ctx', {}).get('error', 'unreadable')}"
    return "it needs a 'tokens' list"


class Access:
    def __init__(self, tokens: dict[str, Principal] | None = None, *, loopback_only: bool = True):
        self.tokens = dict(tokens or {})
        self.loopback_only = loopback_only

    @classmethod
    def load(cls, path: Path | None = None, *, loopback_only: bool = True) -> Access:
        """Tokens from the file at `path` and from TWIN_TOKENS; a bad entry is named by its position only."""
        tokens: dict[str, Principal] = {}

        def add(entry: object, where: str) -> None:
            checked = TokenEntry.checked(entry, where)
            tokens[checked.token] = Principal(checked.user, checked.role)

        if path is not None:
            try:
                entries = TokensFile.model_validate_json(Path(path).read_text()).tokens
            except OSError as error:
                raise TwinError(f"{path}: not a tokens file ({error})") from None
            except ValidationError as error:
                raise TwinError(f"{path}: not a tokens file ({_file_problem(error)})") from None
            for position, entry in enumerate(entries, start=1):
                add(entry, f"{path}: token entry {position}")
        for position, item in enumerate(os.environ.get("TWIN_TOKENS", "").split(","), start=1):
            if not item.strip():
                continue
            parts = item.strip().split(":", 2)
            if len(parts) != 3:
                raise TwinError(f"TWIN_TOKENS entry {position}: expected user:role:token "
                                f"(found {len(parts)} field(s))")
            add(dict(zip(("user", "role", "token"), parts, strict=True)), f"TWIN_TOKENS entry {position}")
        return cls(tokens, loopback_only=loopback_only)

    def issue(self, user: str, role: str) -> str:
        """A new random token for `user` (the demo prints one for its operator)."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = Principal(user, role)
        return token

    def principal(self, authorization: str | None) -> Principal:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            found = None
            for known, principal in self.tokens.items():  # every entry, in constant time: no timing oracle
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = principal
            if scheme.lower() != "bearer" or found is None:
                raise AuthError(401, "unknown or malformed bearer token")
            return found
        if not self.loopback_only:
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'")
        return Principal("anonymous", "viewer")

    def require(self, authorization: str | None, role: str) -> Principal:
        principal = self.principal(authorization)
        if not principal.can(role):
            raise AuthError(403, f"{principal.user} is a {principal.role}; this needs the {role} role")
        return principal
