"""The web-config file (exporter-toolkit format): strict parsing, and basic auth against bcrypt hashes."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from exporter.errors import ConfigError
from exporter.webconfig import BasicAuth, parse_web_config


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks_bcrypt_hashes() -> None:
    auth = BasicAuth({"prom": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()})
    assert auth.allows(header("prom", "s3cret"))
    assert auth.allows(header("prom", "s3cret"))  # the remembered answer
    assert not auth.allows(header("prom", "wrong"))
    assert not auth.allows(header("nobody", "s3cret"))
    assert not auth.allows(None)
    assert not auth.allows("Basic !!!not-base64")
    assert not auth.allows("Bearer abc")


def test_problems_name_file_line_and_key(tmp_path: Path) -> None:
    source = str(tmp_path / "web.yml")
    with pytest.raises(ConfigError) as caught:
        parse_web_config(
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n  min_version: SSL3\n"
            "basic_auth_users:\n  prom: plaintext\ncolour: red\n",
            source,
        )
    problems = "\n".join(caught.value.problems)
    assert f"{source}:2: tls_server_config.cert_file: no such file: {tmp_path / 'missing.crt'}" in problems
    assert f"{source}:4: tls_server_config.min_version: expected one of TLS12, TLS13" in problems
    assert f"{source}:5: basic_auth_users: prom: expected a bcrypt hash" in problems
    assert f"{source}:7: colour: unknown key" in problems


def test_an_empty_file_means_plain_http() -> None:
    config = parse_web_config("", "web.yml")
    assert config.ssl_context() is None and not config.users
