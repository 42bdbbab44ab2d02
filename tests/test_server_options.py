"""`twin serve` and `twin demo` take the HTTP server's limits as flags: --max-body-bytes and --open-docs reach
create_app, bad values are refused naming the option, and --help says what they do."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LOOPBACK
from twin.cli import build_parser, http_options
from twin.server.app import create_app
from twin.server.auth import Access, Principal
from twin.server.deps import MAX_BODY_BYTES
from twin.sim.runtime import Twin

COMMANDS = (["serve", "factory.usda"], ["demo"])


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_parse_to_create_apps_options(command):
    assert http_options(build_parser().parse_args(command)) == {"open_docs": False}  # create_app's defaults
    args = build_parser().parse_args([*command, "--max-body-bytes", "2048", "--open-docs"])
    assert http_options(args) == {"open_docs": True, "max_body_bytes": 2048}


@pytest.mark.parametrize("value", ["0", "-5", "1e6", "1MiB", ""])
def test_a_bad_byte_count_is_refused_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["demo", "--max-body-bytes", value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--max-body-bytes" in error and "whole number of bytes > 0" in error and repr(value) in error


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_what_the_flags_do(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command[0], "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-body-bytes N refuse request bodies over N bytes with 413" in text and "(default: 1 MiB)" in text
    assert MAX_BODY_BYTES == 2**20
    assert "--open-docs serve the API description (/docs, /openapi.json) to anyone" in text


def test_the_parsed_options_take_effect(sample_layout):
    twin = Twin(sample_layout)
    args = build_parser().parse_args(["serve", str(sample_layout), "--max-body-bytes", "100", "--open-docs"])
    access = Access({"token-0123456789abcdef": Principal("ada", "admin")}, loopback_only=False)  # served off loopback
    client = TestClient(create_app(twin, tick_hz=10, access=access, **http_options(args)), base_url=LOOPBACK)
    assert client.get("/openapi.json").status_code == 200  # open without a token
    assert client.get("/api/health").status_code == 401  # the API is not
    answer = client.post("/api/whatif", content=b"x" * 101, headers={"Authorization": "Bearer token-0123456789abcdef"})
    assert answer.status_code == 413 and "100 bytes" in answer.json()["detail"]
