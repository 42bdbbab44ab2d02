"""The commissioning endpoint beyond loopback: Basic256Sha256 SignAndEncrypt with a user and password.

A secure server on loopback (security is what serving beyond it requires): a controller with a trusted
certificate and the password connects, reads, writes and steps; without security, with the wrong password, or
with a certificate the server does not trust, it is refused.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from tests.test_commission import ServedLine
from twin.cli import free_port, main
from twin.commission.address import NAMESPACE
from twin.commission.security import EndpointSecurity, EndpointSecurityError
from twin.commission.server import CommissionServer
from twin.connectors.security import ensure_client_certificate

USER, PASSWORD = "controller", "s3cret-commissioning"
RUN, SPEED = "Line.Conveyors.Conveyor1.Run", "Line.Conveyors.Conveyor1.Speed"


@pytest.fixture(scope="module")
def secure_line(sample_layout, tmp_path_factory) -> Iterator[ServedLine]:
    pki = tmp_path_factory.mktemp("commission-pki")
    served = ServedLine(CommissionServer(sample_layout, port=free_port(), lockstep=True, watchdog_s=60.0,
                                         security=EndpointSecurity(USER, PASSWORD, pki)))
    yield served
    served.close()


@pytest.fixture(scope="module")
def controller_certificate(tmp_path_factory) -> tuple[Path, Path]:
    return ensure_client_certificate(tmp_path_factory.mktemp("controller"), "urn:factory-twin:test-controller")


def secure_client(endpoint: str, certificate: tuple[Path, Path], password: str = PASSWORD) -> Client:
    client = Client(endpoint, timeout=10)
    client.application_uri = "urn:factory-twin:test-controller"  # as in the certificate
    client.set_user(USER)
    client.set_password(password)
    return client


async def connect_secure(client: Client, certificate: tuple[Path, Path]) -> None:
    await client.set_security(SecurityPolicyBasic256Sha256, str(certificate[0]), str(certificate[1]),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    await client.connect()


def trust(line: ServedLine, certificate: Path) -> None:
    assert line.server.security is not None
    shutil.copy(certificate, line.server.security.trusted / certificate.name)


def test_a_trusted_controller_with_the_password_connects_reads_writes_and_steps(secure_line, controller_certificate):
    trust(secure_line, controller_certificate[0])

    async def scenario():
        client = secure_client(secure_line.server.endpoint, controller_certificate)
        await connect_secure(client, controller_certificate)
        try:
            assert client.security_policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
            ns = await client.get_namespace_index(NAMESPACE)
            run, speed = client.get_node(f"ns={ns};s={RUN}"), client.get_node(f"ns={ns};s={SPEED}")
            await run.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            await client.get_node(f"ns={ns};s=Line.Conveyors.Conveyor1.SpeedSetpoint").write_value(
                ua.DataValue(ua.Variant(0.2, ua.VariantType.Double)))
            simulation = client.get_node(f"ns={ns};s=Line.Simulation")
            step = client.get_node(f"ns={ns};s=Line.Simulation.Step")
            await simulation.call_method(step, ua.Variant(1, ua.VariantType.UInt32))
            return await speed.read_value()
        finally:
            await client.disconnect()

    assert asyncio.run(scenario()) == 0.2


def test_the_endpoint_offers_only_basic256sha256_sign_and_encrypt_with_a_user_name(secure_line):
    async def scenario():
        async with Client(secure_line.server.endpoint, timeout=10) as discovery:  # GetEndpoints needs no session
            return await discovery.get_endpoints()

    with pytest.raises(ua.UaError):  # no session without security: the server offers no None endpoint
        asyncio.run(scenario())
    endpoints = asyncio.run(Client(secure_line.server.endpoint, timeout=10).connect_and_get_server_endpoints())
    assert [(e.SecurityPolicyUri, e.SecurityMode) for e in endpoints] == \
        [(SecurityPolicyBasic256Sha256.URI, ua.MessageSecurityMode.SignAndEncrypt)]
    assert [token.TokenType for token in endpoints[0].UserIdentityTokens] == [ua.UserTokenType.UserName]


def test_a_wrong_password_is_refused(secure_line, controller_certificate):
    trust(secure_line, controller_certificate[0])
    client = secure_client(secure_line.server.endpoint, controller_certificate, password="guess")
    with pytest.raises(ua.UaStatusCodeError) as error:
        asyncio.run(connect_secure(client, controller_certificate))
    assert ua.StatusCode(error.value.code).name == "BadUserAccessDenied"


def test_an_untrusted_certificate_is_refused_and_kept_for_the_administrator(secure_line, tmp_path):
    stranger = ensure_client_certificate(tmp_path, "urn:factory-twin:test-controller")
    client = secure_client(secure_line.server.endpoint, stranger)
    with pytest.raises(ua.UaStatusCodeError) as error:
        asyncio.run(connect_secure(client, stranger))
    assert ua.StatusCode(error.value.code).name == "BadCertificateUntrusted"
    assert secure_line.server.security is not None
    assert stranger[0].read_bytes() in [path.read_bytes() for path in secure_line.server.security.rejected.iterdir()]


def test_serving_beyond_loopback_without_security_is_refused(sample_layout, tmp_path, capsys, monkeypatch):
    with pytest.raises(EndpointSecurityError, match=r"--host 0.0.0.0 serves beyond loopback, which needs "
                                                    r"Basic256Sha256 SignAndEncrypt with a user and password"):
        CommissionServer(sample_layout, host="0.0.0.0")
    assert main(["commission", str(sample_layout), "--host", "192.168.7.20", "--http-port", "0"]) == 2
    assert "--host 192.168.7.20 serves beyond loopback" in capsys.readouterr().err
    monkeypatch.delenv("TWIN_COMMISSION_PASSWORD", raising=False)
    assert main(["commission", str(sample_layout), "--host", "0.0.0.0", "--user", USER, "--http-port", "0",
                 "--pki", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--user controller: environment variable TWIN_COMMISSION_PASSWORD (the password) is not set or empty" \
        in error
