"""Token files and TWIN_TOKENS are checked entry by entry; an error names the entry, never what it holds."""

import json

import pytest

from twin.core.errors import TwinError
from twin.server.auth import Access, Principal

SECRET = "s3cret-token-0123456789"


def test_a_tokens_file_and_the_environment_are_both_read(tmp_path, monkeypatch):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"user": "ann", "role": "admin", "token": SECRET, "note": "on call"}]}))
    monkeypatch.setenv("TWIN_TOKENS", "bob:viewer:fedcba9876543210fedcba, ")
    access = Access.load(path)
    assert access.tokens == {SECRET: Principal("ann", "admin"), "fedcba9876543210fedcba": Principal("bob", "viewer")}


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not a tokens file (invalid JSON: "),
    (json.dumps({"users": [SECRET]}), "not a tokens file (it needs a 'tokens' list)"),
    (json.dumps({"tokens": {"ann": SECRET}}), "not a tokens file (it needs a 'tokens' list)"),
    (json.dumps({"tokens": [SECRET]}), "token entry 1: user, role and token must all be non-empty text"),
    (json.dumps({"tokens": [{"user": "ann", "role": "admin", "token": 12345678901234567890}]}),
     "token entry 1: user, role and token must all be non-empty text"),
    (json.dumps({"tokens": [{"user": "ann", "role": "root", "token": ""}]}),  # the empty field is named first
     "token entry 1: user, role and token must all be non-empty text"),
    (json.dumps({"tokens": [{"user": SECRET, "role": "admin", "token": "s3cret"}]}),
     "token entry 1: the token must be at least 16 characters"),
])
def test_a_bad_tokens_file_is_named_without_echoing_it(tmp_path, monkeypatch, content, message):
    monkeypatch.delenv("TWIN_TOKENS", raising=False)
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TwinError) as caught:
        Access.load(path)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    assert "s3cret" not in str(caught.value) and "12345678901234567890" not in str(caught.value)
