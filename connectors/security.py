"""OPC-UA security for the connector: the twin's certificate, secure channels, user identity.

The twin makes its own self-signed application certificate on first use (`twin opcua certs`
shows it, for the PLC's administrator to trust) and connects with Basic256Sha256, signing or
signing and encrypting, as its binding file says. Passwords come from the environment, never
from a file. When the binding file lists trusted server certificates, a server presenting any
other certificate is refused before a session is opened.

Commissioning mistakes get an answer that says what to do: a server that refuses the secure
channel (most often because it does not trust the twin's certificate yet) is named with the
certificate's file and thumbprint, and a server without the asked-for security lists what it offers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from twin.core.errors import BindingError, TwinError

from .bindings import ServerConfig

APPLICATION_URI = "urn:factory-twin:client"
CERTIFICATE = "twin-client-cert.der"
PRIVATE_KEY = "twin-client-key.pem"
_POLICIES = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
T = TypeVar("T")


class ServerSecurityError(TwinError):
    """The server cannot be trusted or offers no channel with the security the binding file asks for."""


def _mode_name(mode: ua.MessageSecurityMode) -> str:
    return mode.name.rstrip("_")  # None_ -> None


def _offered(endpoints: list[ua.EndpointDescription]) -> str:
    """What a server's endpoints offer, e.g. "Basic256Sha256 Sign, None None"."""
    return ", ".join(sorted({f"{e.SecurityPolicyUri.rpartition('#')[2]} {_mode_name(e.SecurityMode)}"
                             for e in endpoints})) or "nothing"


class TwinClient(Client):
    """asyncua's Client for one server of a binding file, turning asyncua's reading of a refusal into advice.

    asyncua 2.1 cannot read the ServiceFault a server sends instead of an OpenSecureChannelResponse
    (node-opcua does, for a client certificate it does not trust) and fails with a bare AssertionError;
    a server without the asked-for security fails CreateSession with "No matching endpoints".
    """

    def __init__(self, server: ServerConfig, **options) -> None:
        super().__init__(server.endpoint, **options)
        self.server = server

    async def open_secure_channel(self, renew: bool = False) -> None:
        try:
            await super().open_secure_channel(renew)
        except (asyncio.CancelledError, TimeoutError):
            raise  # no answer is not a refusal
        except Exception as error:
            security = self.server.security
            if renew or security.policy == "None" or security.certificate is None:
                raise
            answer = f" (it answered {ua.StatusCode(error.code).name})" if isinstance(error, ua.UaStatusCodeError) \
                else ""
            try:
                identity = f"certificate {security.certificate} (SHA-1 thumbprint {thumbprint(security.certificate)})"
            except (OSError, ValueError):
                identity = f"certificate {security.certificate}"
            raise ServerSecurityError(
                f"{self.server.endpoint} refused the {security.policy} {security.mode} secure channel{answer}: "
                f"the server probably does not trust the twin's {identity}. Trust it on the server (many keep "
                f"refused certificates in a 'rejected' folder, to be moved to 'trusted'); the twin retries "
                f"on its own") from error

    async def create_session(self) -> ua.CreateSessionResult:
        try:
            return await super().create_session()
        except ua.UaError as error:
            if isinstance(error, ua.UaStatusCodeError):
                raise  # the server's own answer, with its status code
            endpoints = await self.get_endpoints()  # the channel is open: ask what the server offers
            mode, uri = self.security_policy.Mode, self.security_policy.URI
            if any(e.SecurityMode == mode and e.SecurityPolicyUri == uri for e in endpoints):
                raise
            security = self.server.security
            wanted = "no security" if security.policy == "None" else f"{security.policy} {security.mode}"
            raise ServerSecurityError(f"{self.server.endpoint} offers no endpoint with {wanted} (it offers: "
                                      f"{_offered(endpoints)}); set the binding file's security to one of "
                                      f"those") from error


def default_certificate_folder() -> Path:
    """Per-user, like other tools' PKI folders, so every binding file of that user shares one identity."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "twin" / "pki"


def ensure_client_certificate(folder: Path, application_uri: str = APPLICATION_URI,
                              hostname: str | None = None) -> tuple[Path, Path]:
    """The certificate (DER) and private key (PEM, mode 0600) in `folder`, made once and reused after.

    Reusing matters: PLC administrators trust one certificate, and a new one each start would be
    refused. The subjectAltName carries the application URI (servers match it against the session's)
    and `hostname`, by default this machine's name, which asyncua checks, plus localhost.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    certificate, key = folder / CERTIFICATE, folder / PRIVATE_KEY
    if certificate.is_file() and key.is_file():
        return certificate, key
    private_key = generate_private_key()  # RSA 2048, what Basic256Sha256 expects
    hostnames = dict.fromkeys([hostname or socket.gethostname(), "localhost"])
    cert = generate_self_signed_app_certificate(
        private_key, "Factory twin", {"organizationName": "Factory twin"},
        [x509.UniformResourceIdentifier(application_uri), *map(x509.DNSName, hostnames)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], days=5 * 365,
    )
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a key file left by an earlier attempt keeps its mode otherwise
        handle.write(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return certificate, key


def thumbprint(certificate: Path | bytes) -> str:
    """SHA-1 of the DER certificate, in capitals: how OPC-UA servers list the certificates they trust."""
    der = certificate if isinstance(certificate, bytes) else _der(x509_file(certificate))
    return hashlib.sha1(der).hexdigest().upper()


def x509_file(path: Path) -> x509.Certificate:
    """A certificate file, DER or PEM whatever its name says."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _private_key_file(path: Path) -> rsa.RSAPrivateKey:
    """An unencrypted RSA key, PEM or DER whatever its name says (asyncua goes by the file's suffix)."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"Basic256Sha256 needs an RSA key, this is {type(key).__name__}")
    return key


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _application_uri(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of what an endpoint sends, which may be the certificate and its chain."""
    return _der(x509.load_der_x509_certificate(der[:int.from_bytes(der[2:4], "big") + 4]))


async def configure_client(client: Client, server: ServerConfig, binding_path: Path) -> None:
    """Apply the binding file's identity and security to a client, before `client.connect()`.

    Local mistakes (a missing password variable, unreadable certificate files) raise BindingError
    with the file and the server's line before any network traffic. With a security policy the
    server's endpoints are read (as asyncua's own set_security does) to pick its certificate; when
    trusted_server_certificates is given and that certificate is not among them, ServerSecurityError.
    The chosen certificate is pinned: asyncua then verifies that the server signs the secure channel
    and the session with its key, so an impostor presenting a copy of it cannot connect.
    """
    def fail(message: str) -> BindingError:
        return BindingError(binding_path, f"server {server.name!r}: {message}", line=server.line)

    if server.username is not None:
        password = os.environ.get(server.password_env or "")
        if password is None:
            raise fail(f"environment variable {server.password_env} (password_env) is not set")
        client.set_user(server.username)
        client.set_password(password)  # with policy None asyncua warns if it must send it in clear text
    security = server.security
    if security.policy == "None":
        return

    def read(label: str, path: Path | None, load: Callable[[Path], T]) -> T:
        if path is None:
            raise fail(f"security {label} is not given (twin opcua certs creates one)")
        try:
            return load(path)
        except OSError as error:
            raise fail(f"security {label} {path}: {error.strerror or error}") from None
        except (ValueError, TypeError) as error:  # TypeError: the key is encrypted
            raise fail(f"security {label} {path} cannot be read: {error}") from None

    certificate = read("certificate", security.certificate, x509_file)
    private_key = read("private_key", security.private_key, _private_key_file)
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or \
            private_key.public_key().public_numbers() != public_key.public_numbers():
        raise fail(f"security private_key {security.private_key} does not belong to {security.certificate}")
    application_uri = _application_uri(certificate)
    if application_uri is None:
        raise fail(f"security certificate {security.certificate} has no application URI in its subjectAltName")
    trusted = {_der(read("trusted_server_certificates", path, x509_file))
               for path in security.trusted_server_certificates}
    client.application_uri = application_uri  # servers refuse a session whose URI differs from the certificate's

    policy, mode = _POLICIES[security.policy], _MODES[security.mode]
    endpoints = await client.connect_and_get_server_endpoints()
    matching = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
    if not matching or not matching[0].ServerCertificate:  # a secure endpoint needs the server's certificate
        raise ServerSecurityError(f"{server.endpoint} offers no {security.policy} {security.mode} endpoint "
                                  f"with a certificate (it offers: {_offered(endpoints)})")
    server_certificate = _first_certificate(matching[0].ServerCertificate)
    if trusted and server_certificate not in trusted:
        names = ", ".join(str(path) for path in security.trusted_server_certificates)
        raise ServerSecurityError(f"{server.endpoint} presents certificate {thumbprint(server_certificate)}, "
                                  f"which is not among trusted_server_certificates ({names}); refusing to connect")
    await client.set_security(policy, _der(certificate),
                              private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()),
                              server_certificate=server_certificate, mode=mode)


def certs_command(folder: Path | None = None) -> int:
    """`twin opcua certs`: make the certificate if needed and show what a PLC administrator must trust."""
    certificate, key = ensure_client_certificate(folder or default_certificate_folder())
    cert = x509_file(certificate)
    print(f"certificate: {certificate}")
    print(f"private key: {key}")
    print(f"application URI: {_application_uri(cert)}")
    print(f"thumbprint (SHA-1): {thumbprint(certificate)}")
    print(f"valid until: {cert.not_valid_after_utc:%Y-%m-%d}")
    print("Trust this certificate on the OPC-UA server, then point the binding file's security section at it.")
    return 0
