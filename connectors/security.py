"""OPC-UA security for the connector: the twin's certificate, secure channels, user identity.

The twin makes its own self-signed application certificate on first use (`twin opcua certs`
shows it, for the PLC's administrator to trust) and connects with Basic256Sha256, signing or
signing and encrypting, as its binding file says. Passwords come from the environment, never
from a file. When the binding file lists trusted server certificates, a server presenting any
other certificate is refused before a session is opened.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from twin.errors import BindingError

from .bindings import ServerConfig

APPLICATION_URI = "urn:factory-twin:client"
CERTIFICATE = "twin-client-cert.der"
PRIVATE_KEY = "twin-client-key.pem"
_POLICIES = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256}
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


def default_certificate_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "twin" / "pki"


def ensure_client_certificate(folder: Path | None = None, application_uri: str = APPLICATION_URI,
                              hostname: str | None = None) -> tuple[Path, Path]:
    """The twin's certificate (DER) and private key (PEM, mode 0600), made once and reused after."""
    folder = Path(folder or default_certificate_folder())
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / CERTIFICATE, folder / PRIVATE_KEY
    if certificate.is_file() and key.is_file():
        return certificate, key
    private_key = generate_private_key()
    hostname = hostname or socket.gethostname()
    cert = generate_self_signed_app_certificate(
        private_key, "Factory twin", {"organizationName": "Factory twin"}, [
            x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], days=5 * 365,
    )
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return certificate, key


def thumbprint(certificate: Path | bytes) -> str:
    """SHA-1 thumbprint of a DER certificate, as OPC-UA tools display it."""
    der = certificate if isinstance(certificate, bytes) else _der(Path(certificate))
    return hashlib.sha1(der).hexdigest().upper()


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


async def configure_client(client: Client, server: ServerConfig, binding_path: Path) -> None:
    """Apply the binding file's security and identity to a client, before it connects."""
    def fail(message: str) -> BindingError:
        return BindingError(binding_path, f"server {server.name!r}: {message}", line=server.line)

    if server.username is not None:
        password = os.environ.get(server.password_env or "")
        if password is None:
            raise fail(f"environment variable {server.password_env} (password_env) is not set")
        client.set_user(server.username)
        client.set_password(password)
    security = server.security
    if security.policy == "None":
        return
    for label, path in (("certificate", security.certificate), ("private_key", security.private_key)):
        if path is None or not path.is_file():
            raise fail(f"security {label} {path} is missing (twin opcua certs creates one)")
    certificate = x509.load_der_x509_certificate(_der(security.certificate))
    uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier)
    client.application_uri = uris[0] if uris else APPLICATION_URI
    server_certificate = None
    if security.trusted_server_certificates:
        endpoints = await client.connect_and_get_server_endpoints()
        offered = {bytes(endpoint.ServerCertificate) for endpoint in endpoints if endpoint.ServerCertificate}
        trusted = {_der(path) for path in security.trusted_server_certificates if path.is_file()}
        matching = offered & trusted
        if not matching:
            raise fail(f"the server at {server.endpoint} presents a certificate "
                       f"({', '.join(thumbprint(c) for c in offered) or 'none'}) that is not among "
                       "trusted_server_certificates; refusing to connect")
        server_certificate = matching.pop()
    await client.set_security(_POLICIES[security.policy], str(security.certificate), str(security.private_key),
                              server_certificate=server_certificate, mode=_MODES[security.mode])


def certs_command(folder: Path | None = None) -> int:
    """`twin opcua certs`: make the certificate if needed and show what a PLC administrator must trust."""
    certificate, key = ensure_client_certificate(folder)
    cert = x509.load_der_x509_certificate(certificate.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    print(f"certificate: {certificate}")
    print(f"private key: {key}")
    print(f"application URI: {', '.join(names.get_values_for_type(x509.UniformResourceIdentifier))}")
    print(f"thumbprint (SHA-1): {thumbprint(certificate)}")
    print(f"valid until: {cert.not_valid_after_utc:%Y-%m-%d}")
    print("Trust this certificate on the OPC-UA server, then point the binding file's security section at it.")
    return 0

