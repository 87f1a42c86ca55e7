"""The web-config file (exporter-toolkit format): strict parsing, and basic auth against bcrypt hashes."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import bcrypt
import pytest

from exporter.errors import ConfigError
from exporter.webconfig import BasicAuth, load_web_config, parse_web_config


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_checks_bcrypt_hashes() -> None:
    auth = BasicAuth({"prom": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()})
    assert await auth.allows(header("prom", "s3cret"))
    assert await auth.allows(header("prom", "s3cret"))  # the remembered answer
    assert auth.checks == 1
    assert not await auth.allows(header("prom", "wrong"))
    assert not await auth.allows(header("prom", "wrong"))  # failures are checked every time
    assert auth.checks == 3
    assert not await auth.allows(header("nobody", "s3cret"))
    assert not await auth.allows(None)
    assert not await auth.allows("Basic !!!not-base64")
    assert not await auth.allows("Bearer abc")
    auth.close()


async def test_a_remembered_login_expires_after_its_ttl() -> None:
    now = [1000.0]
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuth({"prom": hashed}, ttl=30.0, clock=lambda: now[0])
    assert await auth.allows(header("prom", "s3cret"))
    now[0] += 29.0
    assert await auth.allows(header("prom", "s3cret"))
    assert auth.checks == 1
    now[0] += 2.0
    assert await auth.allows(header("prom", "s3cret"))
    assert auth.checks == 2
    auth.close()


async def test_a_changed_hash_is_not_answered_from_the_cache() -> None:
    old = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuth({"prom": old})
    assert await auth.allows(header("prom", "s3cret"))
    auth.users["prom"] = bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=4)).decode()
    assert not await auth.allows(header("prom", "s3cret"))
    auth.close()


async def test_a_flood_of_checks_beyond_the_queue_is_refused_without_a_check() -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    auth = BasicAuth({"prom": hashed}, max_waiting=3)
    results = await asyncio.gather(*(auth.allows(header("prom", f"wrong{i}")) for i in range(10)))
    assert not any(results)
    assert (auth.checks, auth.refused_busy) == (3, 7)
    assert await auth.allows(header("prom", "s3cret"))  # the queue drained: checks run again
    auth.close()


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


FAIL_OPEN_DOCUMENTS = {
    "a list": "[]\n",
    "zero": "0\n",
    "false": "false\n",
    "an explicit null": "~\n",
    "basic_auth_users with nothing under it": "basic_auth_users:\n",
    "basic_auth_users as an empty mapping": "basic_auth_users: {}\n",
    "basic_auth_users as a list": "basic_auth_users: []\n",
    "tls_server_config with nothing under it": "tls_server_config:\n",
    "tls_server_config: false": "tls_server_config: false\n",
    "http_server_config with nothing under it": "http_server_config:\n",
}


@pytest.mark.parametrize("case", sorted(FAIL_OPEN_DOCUMENTS))
def test_a_typo_that_would_turn_auth_off_is_an_error_with_file_and_line(case: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_web_config(FAIL_OPEN_DOCUMENTS[case], "/etc/exporter/web.yml")
    assert caught.value.problems, case
    problems = caught.value.problems
    assert all(p.startswith("/etc/exporter/web.yml:1: ") for p in problems), problems


def test_an_empty_file_is_accepted_and_the_open_endpoint_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text("# no TLS, no users yet\n\n")
    with caplog.at_level("WARNING", logger="exporter.webconfig"):
        config = load_web_config(path)
    assert not config.users and config.ssl_context() is None
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "open" in warnings[0].getMessage()
    assert warnings[0].fields == {"web_config": str(path)}  # type: ignore[attr-defined]


def test_users_configured_means_no_open_endpoint_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    with caplog.at_level("WARNING", logger="exporter.webconfig"):
        load_web_config(path)
    assert not caplog.records


def test_http_server_config_headers_are_read_as_the_exporter_toolkit_defines_them() -> None:
    config = parse_web_config(
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    Content-Security-Policy: default-src 'none'\n",
        "web.yml",
    )
    assert config.headers == {
        "X-Frame-Options": "deny",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "Content-Security-Policy": "default-src 'none'",
    }


def test_headers_the_toolkit_refuses_and_http2_are_errors_naming_line_and_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_web_config(
            "http_server_config:\n"
            "  http2: true\n"
            "  headers:\n"
            "    X-Frame-Options: allow-from https://example.com\n"
            "    Content-Type: text/plain\n"
            "    Set-Cookie: a=b\n"
            "    X-Content-Type-Options: sniff\n",
            "web.yml",
        )
    problems = "\n".join(caught.value.problems)
    assert "web.yml:2: http_server_config.http2: this exporter serves HTTP/1.1 only" in problems
    where = "web.yml:3: http_server_config.headers"
    assert f"{where}: X-Frame-Options: expected one of deny, sameorigin" in problems
    assert f"{where}: Content-Type: this header cannot be configured" in problems
    assert "Set-Cookie: this header cannot be configured" in problems
    assert "X-Content-Type-Options: expected one of nosniff" in problems
