"""A Debian mosquitto broker for the MQTT tests: its own loopback port and generated config (TLS, passwords)."""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="Debian mosquitto is not installed (scripts/setup.sh)")


@dataclass
class Broker:
    port: int
    process: subprocess.Popen
    config: Path
    ca: Path | None = None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)

    def start(self) -> None:
        """(Re)start on the same port and config."""
        self.process = _launch(self.config, self.port)


def _launch(config: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([str(MOSQUITTO), "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not open its port in 10 s")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, certificate, key) as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("twin test CA", ca_key, None, ca_key, ca=True)
    server_cert = build("127.0.0.1", server_key, ca_cert.subject, ca_key, ca=False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


def start_broker(folder: Path, *, tls: bool = False, users: dict[str, str] | None = None) -> Broker:
    """mosquitto on a free loopback port; with `tls`, a generated CA (Broker.ca); with `users`, passwords."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # run as root, mosquitto would switch to user "mosquitto", who cannot read pytest's private tmp folders
    lines = [f"listener {port} 127.0.0.1", "persistence false", f"allow_anonymous {'false' if users else 'true'}",
             f"user {getpass.getuser()}"]
    ca = None
    if tls:
        ca, certificate, key = _certificates(folder)
        lines += [f"cafile {ca}", f"certfile {certificate}", f"keyfile {key}"]
    if users:
        password_file = folder / "passwords"
        password_file.write_text("".join(f"{user}:{password}\n" for user, password in users.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(password_file)], check=True, capture_output=True)
        lines.append(f"password_file {password_file}")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return Broker(port, _launch(config, port), config, ca)
