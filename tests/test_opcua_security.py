"""Secure channels and user authentication against an asyncua server that requires them."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from tests.helpers import free_port
from twin.connectors.bindings import load_bindings
from twin.connectors.opcua import OpcUaConnector
from twin.connectors.security import ensure_client_certificate, thumbprint
from twin.core.cache import RuntimeCache, quality_name
from twin.core.errors import BindingError

SERVER_URI = "urn:factory-twin:secure-test-server"


class OnlyOperator:
    """The server's user manager: one user, one password."""

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == "operator" and password == "s3cret":
            return User(role=UserRole.User)
        return None


_SIGN = ua.SecurityPolicyType.Basic256Sha256_Sign
_SIGN_AND_ENCRYPT = ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt


async def secure_server(folder: Path, port: int, policies=(_SIGN, _SIGN_AND_ENCRYPT)) -> Server:
    server = Server(user_manager=OnlyOperator())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/secure/")
    await server.set_application_uri(SERVER_URI)
    certificate, key = ensure_client_certificate(folder / "server", SERVER_URI, "localhost")
    await server.load_certificate(str(certificate))
    await server.load_private_key(str(key))
    server.set_security_policy(list(policies))
    server.set_security_IDs(["Username"])
    ns = await server.register_namespace("urn:secure")
    await server.nodes.objects.add_variable(ua.NodeId("Pressure", ns), f"{ns}:Pressure", 4.2)
    await server.start()
    return server


def binding_file(folder: Path, port: int, mode: str = "SignAndEncrypt", *, trusted: str | None = None,
                 policy: str = "Basic256Sha256") -> Path:
    certificate, key = ensure_client_certificate(folder / "client")
    security = "" if policy == "None" else f"""    security:
      policy: {policy}
      mode: {mode}
      certificate: {certificate}
      private_key: {key}
""" + (f"      trusted_server_certificates: [{trusted}]\n" if trusted else "")
    path = folder / "secure.yaml"
    path.write_text(f"""servers:
  press:
    endpoint: opc.tcp://127.0.0.1:{port}/secure/
{security}    username: operator
    password_env: TWIN_TEST_PRESS_PASSWORD
bindings:
  - server: press
    node: "nsu=urn:secure;s=Pressure"
    prim: /Press
    attr: twin:pressure
    unit: bar
""")
    return path


async def stream_once(path: Path, *, refused: bool = False) -> tuple[RuntimeCache, OpcUaConnector]:
    """Connect until the value is good or, where a refusal is expected (`refused`), until the first refusal."""
    cache = RuntimeCache()
    connector = OpcUaConnector(load_bindings(path), cache, max_backoff=1.0)
    await connector.start()
    deadline = time.monotonic() + 15.0

    def done() -> bool:
        return quality_name(cache.status[0]) == "good" or (refused and connector.health()["press"]["last_error"])

    try:
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await connector.stop()
    return cache, connector


@pytest.fixture(autouse=True)
def password(monkeypatch):
    monkeypatch.setenv("TWIN_TEST_PRESS_PASSWORD", "s3cret")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_secure_channel_with_user_and_password(tmp_path, mode):
    async def scenario():
        port = free_port()
        server = await secure_server(tmp_path, port)
        try:
            trusted = tmp_path / "server" / "twin-client-cert.der"
            cache, connector = await stream_once(binding_file(tmp_path, port, mode, trusted=str(trusted)))
            assert cache.signal_value(0) == pytest.approx(4.2), connector.health()
            assert connector.health()["press"]["connects"] == 1
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(90)
def test_refusals_are_clear(tmp_path, monkeypatch):
    async def scenario():
        port = free_port()
        server = await secure_server(tmp_path, port)
        try:
            # no security at all: the server offers no such endpoint
            _, connector = await stream_once(binding_file(tmp_path, port, policy="None"), refused=True)
            assert not connector.health()["press"]["connects"]
            assert "secure.yaml:2: server 'press'" in connector.health()["press"]["last_error"]
            # a wrong password
            monkeypatch.setenv("TWIN_TEST_PRESS_PASSWORD", "guess")
            _, connector = await stream_once(binding_file(tmp_path, port), refused=True)
            assert not connector.health()["press"]["connects"]
            assert "BadUserAccessDenied" in connector.health()["press"]["last_error"] or \
                "BadIdentityTokenRejected" in connector.health()["press"]["last_error"]
            # a server certificate that is not the trusted one
            monkeypatch.setenv("TWIN_TEST_PRESS_PASSWORD", "s3cret")
            stranger, _ = ensure_client_certificate(tmp_path / "stranger", "urn:stranger")
            _, connector = await stream_once(binding_file(tmp_path, port, trusted=str(stranger)), refused=True)
            error = connector.health()["press"]["last_error"]
            assert "not among trusted_server_certificates" in error and f"127.0.0.1:{port}" in error
            # no password in the environment
            monkeypatch.delenv("TWIN_TEST_PRESS_PASSWORD")
            _, connector = await stream_once(binding_file(tmp_path, port), refused=True)
            assert "environment variable TWIN_TEST_PRESS_PASSWORD (password_env) is not set" in \
                connector.health()["press"]["last_error"]
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_the_client_certificate_is_made_once_and_kept_private(tmp_path):
    certificate, key = ensure_client_certificate(tmp_path)
    again = ensure_client_certificate(tmp_path)
    assert again == (certificate, key) and thumbprint(again[0]) == thumbprint(certificate)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_missing_certificate_files_are_named(tmp_path):
    path = binding_file(tmp_path, 4840)
    path.write_text(path.read_text().replace("twin-client-cert.der", "missing-cert.der"))
    from twin.connectors.security import configure_client

    async def scenario():
        from asyncua import Client

        bindings = load_bindings(path)
        await configure_client(Client("opc.tcp://127.0.0.1:4840"), bindings.servers["press"], path)

    with pytest.raises(BindingError, match=r"secure.yaml:2: server 'press': security certificate .*missing-cert.der"):
        asyncio.run(scenario())


def test_certs_command_shows_what_to_trust(tmp_path, capsys):
    from twin.cli import main

    assert main(["opcua", "certs", "--folder", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    certificate = tmp_path / "twin-client-cert.der"
    assert f"thumbprint (SHA-1): {thumbprint(certificate)}" in printed
    assert "application URI: urn:factory-twin:client" in printed


@pytest.mark.timeout(60)
def test_a_server_without_the_asked_for_security_lists_what_it_offers(tmp_path, caplog):
    """asyncua alone says "No matching endpoints: 1, ...#None" when the binding file asks for no security;
    the connector's health and log name what the server offers instead, whatever was asked for."""
    async def scenario():
        port = free_port()
        server = await secure_server(tmp_path, port, policies=[_SIGN])
        try:
            for policy, mode, wanted in [("None", "Sign", "no security"),
                                         ("Basic256Sha256", "SignAndEncrypt", "Basic256Sha256 SignAndEncrypt")]:
                _, connector = await stream_once(binding_file(tmp_path, port, mode, policy=policy), refused=True)
                error = connector.health()["press"]["last_error"]
                assert not connector.health()["press"]["connects"]
                assert f"127.0.0.1:{port}/secure/ offers no " in error and wanted in error, error
                assert "(it offers: Basic256Sha256 Sign)" in error, error
                assert error in caplog.text
        finally:
            await server.stop()

    asyncio.run(scenario())
