"""Security of the commissioning endpoint: Basic256Sha256 SignAndEncrypt and a user with a password.

On loopback the endpoint may be open (security None, anonymous): only programs on this machine reach it. Bound
to any other address, a controller on the network could drive the simulated line, so the server refuses to start
without security. With security only the Basic256Sha256 SignAndEncrypt endpoint is offered, sessions need the
user and password, and client certificates are checked against a trust folder: an unknown certificate is
refused and copied to `rejected/` for the administrator to move to `trusted/`, as PLCs and node-opcua do.
The server's own certificate is made once in the PKI folder by the same code as the twin's client certificate
(twin.connectors.security), so administrators trust one certificate across restarts.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twin.connectors.security import default_certificate_folder, ensure_client_certificate, thumbprint, x509_file
from twin.core.errors import TwinError

APPLICATION_URI = "urn:factory-twin:commission"
PASSWORD_ENV = "TWIN_COMMISSION_PASSWORD"


class EndpointSecurityError(TwinError):
    """The endpoint would be reachable beyond loopback without security, or its security cannot be set up."""


def default_pki_folder() -> Path:
    return default_certificate_folder() / "commission"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@dataclass(frozen=True)
class EndpointSecurity:
    """Who may connect: one user and password, clients whose certificates are in `pki/trusted/`."""

    username: str
    password: str = field(repr=False)
    pki: Path = field(default_factory=lambda: default_pki_folder())  # own certificate and key, trusted/, rejected/

    @classmethod
    def from_environment(cls, username: str, pki: Path | None = None,
                         password_env: str = PASSWORD_ENV) -> EndpointSecurity:
        """The password from the environment, never from a command line that `ps` shows."""
        password = os.environ.get(password_env)
        if not password:
            raise EndpointSecurityError(f"--user {username}: environment variable {password_env} (the password) "
                                        "is not set or empty")
        return cls(username, password, pki or default_pki_folder())

    @property
    def trusted(self) -> Path:
        return self.pki / "trusted"

    @property
    def rejected(self) -> Path:
        return self.pki / "rejected"


def require_security(host: str, security: EndpointSecurity | None) -> None:
    """Refuse to serve beyond loopback with security None."""
    if security is None and not is_loopback(host):
        raise EndpointSecurityError(
            f"--host {host} serves beyond loopback, which needs Basic256Sha256 SignAndEncrypt with a user and "
            f"password: give --user NAME and set {PASSWORD_ENV} (the server's certificate is made in --pki, by "
            f"default {default_pki_folder()}; controllers' certificates go in its trusted/ folder)")


class _PasswordUser(UserManager):
    def __init__(self, username: str, password: str):
        self.username, self.password = username, password.encode()

    def get_user(self, iserver, username: str | None = None, password: str | None = None,
                 certificate=None) -> User | None:
        if username == self.username and password is not None \
                and hmac.compare_digest(password.encode(), self.password):
            return User(role=UserRole.User, name=username)
        return None  # asyncua answers BadUserAccessDenied


def _certificate_hostname(host: str) -> str | None:
    """The name controllers connect to; for an address or localhost, this machine's name (the default)."""
    if host == "localhost":
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _trust_check(security: EndpointSecurity):
    async def validate(certificate: x509.Certificate, application: ua.ApplicationDescription) -> None:
        der = certificate.public_bytes(serialization.Encoding.DER)
        trusted = sorted(security.trusted.glob("*.der")) + sorted(security.trusted.glob("*.pem"))
        if any(der == x509_file(path).public_bytes(serialization.Encoding.DER) for path in trusted):
            return
        security.rejected.mkdir(parents=True, exist_ok=True)
        (security.rejected / f"{thumbprint(der)}.der").write_bytes(der)
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    return validate


async def secure_endpoint(server: Server, security: EndpointSecurity | None, host: str) -> None:
    """Offer Basic256Sha256 SignAndEncrypt with user and password only, or (on loopback) security None."""
    require_security(host, security)
    if security is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        return
    certificate, key = ensure_client_certificate(security.pki, APPLICATION_URI, _certificate_hostname(host))
    security.trusted.mkdir(parents=True, exist_ok=True)
    await server.set_application_uri(APPLICATION_URI)  # must match the certificate's subjectAltName
    await server.load_certificate(str(certificate))
    await server.load_private_key(str(key))
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    server.set_identity_tokens([ua.UserNameIdentityToken])
    server.iserver.set_user_manager(_PasswordUser(security.username, security.password))
    server.set_certificate_validator(_trust_check(security))
