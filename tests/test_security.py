"""Security: the DSN password never leaks, sessions are read-only, the role is least-privilege, and the
HTTP server does TLS, basic auth and authenticated reloads (exporter-toolkit web config)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import ipaddress
import logging
import secrets
import signal
import ssl
import string
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import asyncpg
import bcrypt
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import exporter_for, parse, serving, split_password, target_for, value
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_faults import cli_env, running_cli, wait_healthy

from devtools.pgcluster import TestDatabase, free_port
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.check import run_check
from exporter.config import TargetConfig, Thresholds
from exporter.database import TargetDatabase
from exporter.errors import ConnectError, QueryError
from exporter.logs import JsonFormatter, LogfmtFormatter
from exporter.web import make_app
from exporter.webconfig import WebConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
NEWEST = PREFECT_VERSIONS[-1]
# The tables deploy/exporter-role.sql grants SELECT on; nothing else.
GRANTED = {
    "alembic_version", "concurrency_limit", "concurrency_limit_v2", "deployment", "event_resources",
    "events", "flow", "flow_run", "flow_run_state", "task_run", "work_pool", "work_queue", "worker",
}  # fmt: skip


# --- the DSN password never leaks --------------------------------------------------------------------


@asynccontextmanager
async def leak_role(db: TestDatabase) -> AsyncIterator[tuple[str, str]]:
    """A login role with a password full of URL-special characters; yields (role, password)."""
    role = f"ppe_leak_{secrets.token_hex(4)}"
    password = f"Leak-{secrets.token_hex(6)}-p@ss:w/rd?&=%#"
    admin = await asyncpg.connect(db.admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"GRANT pg_monitor TO {role}")
        yield role, password
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


def leaks(text: str, secrets_: list[str]) -> list[str]:
    """Return the secrets (raw or URL-encoded) found in ``text``."""
    return [s for s in secrets_ for form in {s, quote(s, safe=""), quote(s)} if form in text]


async def fetch_text(http: aiohttp.ClientSession, url: str) -> str:
    """GET ``url`` and return the body whatever the status."""
    async with http.get(url) as response:
        return await response.text()


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_the_password_never_leaks(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """No password (right, wrong, unreachable) appears in logs, pages, /metrics or --check output."""
    # Passwords in the DSN's user info and in ?password=; logs at debug level, logfmt and JSON.
    host, port, dbname = "127.0.0.1", urlsplit(prefect_db.admin_dsn).port, prefect_db.name
    dead_port = free_port()
    server = f"{host}:{port}/{dbname}"
    async with leak_role(prefect_db) as (role, password):
        wrong = password.replace("Leak-", "Wrong-")
        unreachable = password.replace("Leak-", "Gone-")
        secret_list = [password, wrong, unreachable]
        config = tmp_path / "exporter.yaml"
        listen = free_port()
        base = f"http://127.0.0.1:{listen}"
        outputs: dict[str, str] = {}
        for log_format in ("logfmt", "json"):
            config.write_text(
                f"listen: 127.0.0.1:{listen}\n"
                f"log: {{level: debug, format: {log_format}}}\n"
                "scrape_timeout: 4s\n"
                "targets:\n"
                f"  - name: good\n    dsn: postgresql://{role}:{quote(password, safe='')}@{server}\n"
                f"  - name: wrong\n    dsn: postgresql://{role}@{server}?password={quote(wrong, safe='')}\n"
                f"  - name: gone\n"
                f"    dsn: postgresql://{role}:{quote(unreachable, safe='')}@{host}:{dead_port}/{dbname}\n"
                "    connect_timeout: 1s\n"
            )
            log_path = tmp_path / f"exporter-{log_format}.log"
            async with running_cli(["--config", str(config)], cli_env(None), log_path) as process:
                await wait_healthy(base, process)
                async with aiohttp.ClientSession() as http:
                    for path in ("/metrics", "/", "/readyz", "/metrics?target=wrong", "/metrics?target=gone"):
                        outputs[f"{log_format} {path}"] = await fetch_text(http, f"{base}{path}")
                    await asyncio.sleep(3)  # sampler reconnects and their failures are logged
                    outputs[f"{log_format} /metrics again"] = await fetch_text(http, f"{base}/metrics")
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 15)
            outputs[f"{log_format} log"] = log_path.read_text()
        check = subprocess.run(
            [sys.executable, "-m", "exporter", "--config", str(config), "--check"],
            cwd=REPO_ROOT,
            env=cli_env(None),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outputs["--check stdout"], outputs["--check stderr"] = check.stdout, check.stderr
        wrong_cli = subprocess.run(
            [sys.executable, "-m", "exporter", "--check", "--dsn",
             f"postgresql://{role}:{quote(wrong, safe='')}@{host}:{port}/{dbname}"],
            cwd=REPO_ROOT, env=cli_env(None), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        outputs["--dsn --check"] = wrong_cli.stdout + wrong_cli.stderr
    series = parse(outputs["logfmt /metrics again"])
    found = {where: leaks(text, secret_list) for where, text in outputs.items() if leaks(text, secret_list)}
    assert not found, found
    # The exporter did meet each case: success, authentication failure, unreachable server.
    assert value(series, "prefect_db_up", target="good") == 1.0
    assert value(series, "prefect_db_up", target="wrong") == 0.0
    assert value(series, "prefect_db_up", target="gone") == 0.0
    assert "password authentication failed" in outputs["logfmt /"]
    assert "password authentication failed" in outputs["--check stderr"]
    assert "password authentication failed" in outputs["--dsn --check"]
    assert "***" in outputs["logfmt log"] and "***" in outputs["json log"]  # the DSNs were logged, masked
    assert check.returncode == 1 and wrong_cli.returncode == 1
    assert "Traceback" not in outputs["logfmt log"] + outputs["json log"] + check.stderr


PRINTABLE_PASSWORDS = st.text(alphabet=string.printable, min_size=8, max_size=32)


async def outputs_for_a_wrong_password(db: TestDatabase, dsn: str) -> dict[str, str]:
    """Every output of an in-process exporter whose only target has ``dsn``: logs, /, /metrics, --check."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        target = TargetConfig(name="wrong", dsn=dsn, connect_timeout=3.0)
        outputs: dict[str, str] = {}
        async with serving(exporter_for(target, sampler=False, scrape_timeout=4.0)) as (http, base):
            for path in ("/metrics", "/", "/readyz"):
                outputs[path] = await fetch_text(http, f"{base}{path}")
        out, err = io.StringIO(), io.StringIO()
        code = await run_check(exporter_for(target, sampler=False, scrape_timeout=4.0), out, err)
        outputs["--check"] = f"exit {code}\n{out.getvalue()}{err.getvalue()}"
        json_handler = logging.StreamHandler(json_stream := io.StringIO())
        json_handler.setFormatter(JsonFormatter())
        root.addHandler(json_handler)
        try:
            database = TargetDatabase(target, Thresholds())
            with pytest.raises(ConnectError) as caught:
                await database.ensure_connected()
            outputs["ConnectError"] = str(caught.value)
        finally:
            root.removeHandler(json_handler)
        outputs["json log"] = json_stream.getvalue()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    outputs["logfmt log"] = stream.getvalue()
    return outputs


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
@given(password=PRINTABLE_PASSWORDS)
@example(password="p@ss:w/rd?&=%#")
@example(password="%41%40%3A")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_random_wrong_password_never_appears_in_any_output(prefect_db: TestDatabase, password: str) -> None:
    """Passwords of any printable characters, in the user info and in ?password=, against a real server."""
    # A password such as 00000000 would be "found" in any page of numbers: ask for a few distinct characters.
    assume(len(set(password)) >= 5 and password.strip(string.digits + ".") != "")
    dsn, _ = split_password(prefect_db.exporter_dsn)
    parts = urlsplit(dsn)
    in_userinfo = parts._replace(
        netloc=f"prefect_exporter:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    )
    in_query = parts._replace(query=f"sslmode=disable&password={quote(password, safe='')}")
    for wrong in (in_userinfo.geturl(), in_query.geturl()):
        outputs = asyncio.run(outputs_for_a_wrong_password(prefect_db, wrong))
        found = {where: text for where, text in outputs.items() if leaks(text, [password])}
        assert not found, found
        # The failure was real: the server refused the password, and every output says so.
        for where in ("/", "--check", "ConnectError", "logfmt log", "json log"):
            assert "password authentication failed" in outputs[where], (where, outputs[where])
        assert "prefect_db_up" in outputs["/metrics"]


# --- read-only sessions, least-privilege role -----------------------------------------------------------


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_sessions_of_the_exporter_are_read_only(prefect_db: TestDatabase) -> None:
    """Even where the role may write, a write through the exporter's own sessions fails as read-only."""
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        await admin.execute("CREATE TABLE scratch (a int)")
        await admin.execute("GRANT INSERT, UPDATE, DELETE, SELECT ON scratch TO prefect_exporter")
    finally:
        await admin.close()
    db = TargetDatabase(target_for(prefect_db), Thresholds())
    try:
        with pytest.raises(QueryError) as pooled:
            await db.fetch("INSERT INTO scratch VALUES (1) RETURNING a", 5.0)
        sampler_conn = await db.connect_single()
        try:
            assert await sampler_conn.fetchval("SHOW transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await sampler_conn.execute("DELETE FROM scratch")
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await sampler_conn.execute("UPDATE flow_run SET name = name")
        finally:
            await sampler_conn.close()
        rows = await db.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('default_transaction_read_only',"
            " 'lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout',"
            " 'application_name')",
            5.0,
        )
        settings = {row["name"]: row["setting"] for row in rows}
    finally:
        await db.close()
    assert "read-only transaction" in str(pooled.value) and "25006" in str(pooled.value)
    assert settings["default_transaction_read_only"] == "on"
    assert settings["application_name"] == "prefect-db-exporter"
    assert int(settings["lock_timeout"]) > 0 and int(settings["statement_timeout"]) > 0
    assert int(settings["idle_in_transaction_session_timeout"]) > 0


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_the_exporter_role_is_least_privilege(prefect_db: TestDatabase) -> None:
    """The role of deploy/exporter-role.sql reads only the granted tables, writes and creates nothing."""
    # Even in a read-write transaction: no write, no CREATE, no signalling other sessions.
    conn = await asyncpg.connect(prefect_db.exporter_dsn)
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        attributes = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolconfig"
            " FROM pg_roles WHERE rolname = current_user"
        )
        privileges = await conn.fetch(
            """
            SELECT c.relname, p.privilege
            FROM pg_class AS c
            CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                                    'TRIGGER']) AS p (privilege)
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
              AND has_table_privilege(c.oid, p.privilege)
            """
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM block_document LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM log LIMIT 1")
        async with conn.transaction(readonly=False):
            await conn.execute("SET LOCAL transaction_read_only = off")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE public.exporter_was_here (a int)")
        async with conn.transaction(readonly=False):
            await conn.execute("SET LOCAL transaction_read_only = off")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE flow_run SET name = name")
        victim = await asyncpg.connect(prefect_db.admin_dsn)
        try:
            pid = victim.get_server_pid()
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("SELECT pg_cancel_backend($1)", pid)
        finally:
            await victim.close()
        async with conn.transaction(readonly=False):
            await conn.execute("SET LOCAL transaction_read_only = off")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE ROLE exporter_made_this")
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetchval("SELECT pg_read_file('postgresql.conf')")
        tables = {r["relname"] for r in await admin.fetch("SELECT relname FROM pg_class WHERE relkind = 'r'")}
    finally:
        await conn.close()
        await admin.close()
    assert not any(attributes[k] for k in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication",
                                           "rolbypassrls"))  # fmt: skip
    assert "default_transaction_read_only=on" in attributes["rolconfig"]
    assert {p["privilege"] for p in privileges} == {"SELECT"}, privileges
    assert {p["relname"] for p in privileges} == GRANTED & tables
    assert "exporter_was_here" not in tables


# --- TLS, basic auth and reload ----------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1/localhost and its key; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header for HTTP basic auth."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


USER, RIGHT = "prometheus", "right-Pa55word"


def write_web_config(directory: Path, tls: bool = True) -> Path:
    """Write a web config with TLS (optional) and one basic-auth user; return its path."""
    lines = []
    if tls:
        cert, key = self_signed(directory)
        lines += ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
    hashed = bcrypt.hashpw(RIGHT.encode(), bcrypt.gensalt(rounds=4)).decode()
    lines += ["basic_auth_users:", f"  {USER}: '{hashed}'"]
    path = directory / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def exporter_config(db: TestDatabase, directory: Path, port: int, extra: str = "") -> str:
    """A config file's text for ``db``, its password in a file."""
    dsn, password = split_password(db.exporter_dsn)
    secret = directory / "password"
    secret.write_text(f"{password}\n")
    return (
        f"listen: 127.0.0.1:{port}\n"
        "targets:\n"
        f"  - name: prod\n    dsn: {dsn}\n    password_file: {secret}\n" + extra
    )


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, context: ssl.SSLContext | bool, **kwargs: object
) -> tuple[int, str, dict[str, str]]:
    """Return (status, body, headers) of one request."""
    async with http.request(method, url, ssl=context, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text(), dict(response.headers)


async def scrape_series(http: aiohttp.ClientSession, url: str, context: ssl.SSLContext | bool) -> dict:  # type: ignore[type-arg]
    """Scrape with the right credentials and parse."""
    status, body, _ = await status_of(http, "GET", url, context, headers=basic(USER, RIGHT))
    assert status == 200, body
    return parse(body)


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_tls_basic_auth_and_reload(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """TLS and basic auth from web_config_file; /-/reload and SIGHUP keep counters and bad configs out."""
    # A self-signed certificate and a bcrypt user; POST /-/reload (authenticated) and SIGHUP apply a new
    # config and keep the counters; an invalid one keeps the old config running.
    port = free_port()
    web = write_web_config(tmp_path)
    config = tmp_path / "exporter.yaml"
    base_text = exporter_config(prefect_db, tmp_path, port, f"web_config_file: {web}\n")
    config.write_text(base_text)
    https = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    log_path = tmp_path / "exporter.log"
    args = ["--config", str(config), "--web.enable-lifecycle"]
    async with running_cli(args, cli_env(None), log_path) as process:
        await wait_healthy(https, process, ssl=trusted)
        async with aiohttp.ClientSession() as http:
            metrics = f"{https}/metrics"
            no_auth = await status_of(http, "GET", metrics, trusted)
            wrong = await status_of(http, "GET", metrics, trusted, headers=basic(USER, "wrong"))
            nobody = await status_of(http, "GET", metrics, trusted, headers=basic("nobody", RIGHT))
            empty = await status_of(http, "GET", metrics, trusted, headers=basic("", ""))
            garbage = await status_of(http, "GET", metrics, trusted, headers={"Authorization": "Basic %%%"})
            bearer = await status_of(http, "GET", metrics, trusted, headers={"Authorization": "Bearer x"})
            index = await status_of(http, "GET", f"{https}/", trusted)
            first = await scrape_series(http, metrics, trusted)
            assert value(first, "prefect_db_up") == 1.0
            # Real TLS: a client that does not trust the certificate refuses it, plain HTTP gets nothing.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await status_of(http, "GET", metrics, ssl.create_default_context())
            try:
                plain: object = (await status_of(http, "GET", f"http://127.0.0.1:{port}/metrics", False))[0]
            except aiohttp.ClientError as error:
                plain = type(error).__name__
            await asyncio.sleep(1.1)
            before = await scrape_series(http, metrics, trusted)
            reloaded_at = value(before, "prefect_db_exporter_config_last_reload_success_timestamp_seconds")
            runs_before = value(
                before, "prefect_db_exporter_queries_total", collector="connections", status="success"
            )

            # POST /-/reload, behind basic auth, with a new exclude list.
            config.write_text(base_text + "collectors:\n  exclude: [tag_concurrency_limits]\n")
            reload_no_auth = await status_of(http, "POST", f"{https}/-/reload", trusted)
            reload_ok = await status_of(
                http, "POST", f"{https}/-/reload", trusted, headers=basic(USER, RIGHT)
            )
            after = await scrape_series(http, metrics, trusted)

            # SIGHUP with an invalid config: the previous one keeps running.
            config.write_text(base_text + "collectors:\n  exclude: [no_such_collector]\nbogus: 1\n")
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                broken = await scrape_series(http, metrics, trusted)
                if value(broken, "prefect_db_exporter_config_last_reload_successful") == 0.0:
                    break
                await asyncio.sleep(0.2)
            reload_bad = await status_of(
                http, "POST", f"{https}/-/reload", trusted, headers=basic(USER, RIGHT)
            )

            # Fixed again, by SIGHUP.
            config.write_text(base_text)
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                fixed = await scrape_series(http, metrics, trusted)
                if value(fixed, "prefect_db_exporter_config_last_reload_successful") == 1.0:
                    break
                await asyncio.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
    log = log_path.read_text()

    def collectors(series: dict) -> set[str]:  # type: ignore[type-arg]
        return {
            dict(labels)["collector"]
            for (name, labels) in series
            if name == "prefect_db_exporter_collector_success"
        }

    print(
        f"\n[figures] TLS/basic auth: no_auth={no_auth[0]} wrong={wrong[0]} nobody={nobody[0]}"
        f" empty={empty[0]}"
        f" garbage={garbage[0]} bearer={bearer[0]} index={index[0]} plain_http={plain}"
        f" reload_no_auth={reload_no_auth[0]} reload_ok={reload_ok[0]} reload_bad={reload_bad[0]}",
        file=sys.stderr,
    )
    for answer in (no_auth, wrong, nobody, empty, garbage, bearer, index):
        assert answer[0] == 401, answer
    assert no_auth[2].get("WWW-Authenticate", "").startswith("Basic")
    assert plain != 200
    assert reload_no_auth[0] == 401
    assert reload_ok[0] == 200, reload_ok
    assert value(after, "prefect_db_exporter_config_last_reload_successful") == 1.0
    reloaded_again = value(after, "prefect_db_exporter_config_last_reload_success_timestamp_seconds")
    assert reloaded_at is not None and reloaded_again is not None and reloaded_again > reloaded_at
    assert "tag_concurrency_limits" not in collectors(after) and "tag_concurrency_limits" in collectors(
        before
    )
    # Counters survive the reload: no reset seen by Prometheus.
    runs_after = value(after, "prefect_db_exporter_queries_total", collector="connections", status="success")
    assert runs_after is not None and runs_before is not None and runs_after >= runs_before
    assert value(broken, "prefect_db_exporter_config_last_reload_successful") == 0.0
    assert value(broken, "prefect_db_up") == 1.0
    assert "tag_concurrency_limits" not in collectors(broken)  # still the config of the good reload
    assert value(broken, "prefect_db_exporter_config_last_reload_success_timestamp_seconds") == value(
        after, "prefect_db_exporter_config_last_reload_success_timestamp_seconds"
    )
    assert reload_bad[0] == 500 and "bogus" in reload_bad[1], reload_bad
    assert value(fixed, "prefect_db_exporter_config_last_reload_successful") == 1.0
    assert "tag_concurrency_limits" in collectors(fixed)
    assert code == 0, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_web_config_flag_basic_auth_without_tls_and_no_lifecycle(
    prefect_db: TestDatabase, tmp_path: Path
) -> None:
    """``--web.config.file`` with basic auth only; no /-/reload without ``--web.enable-lifecycle``."""
    port = free_port()
    web = write_web_config(tmp_path, tls=False)
    dsn, password = split_password(prefect_db.exporter_dsn)
    base = f"http://127.0.0.1:{port}"
    args = ["--dsn", dsn, "--listen", f"127.0.0.1:{port}", "--web.config.file", str(web)]
    async with running_cli(args, cli_env(password), tmp_path / "exporter.log") as process:
        await wait_healthy(base, process)
        async with aiohttp.ClientSession() as http:
            no_auth = await status_of(http, "GET", f"{base}/metrics", False)
            right = await status_of(http, "GET", f"{base}/metrics", False, headers=basic(USER, RIGHT))
            reload = await status_of(http, "POST", f"{base}/-/reload", False, headers=basic(USER, RIGHT))
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)
    assert no_auth[0] == 401
    assert right[0] == 200 and value(parse(right[1]), "prefect_db_up") == 1.0
    assert reload[0] in (404, 405), reload


BAD_WEB_CONFIGS = {
    "plaintext password": "basic_auth_users:\n  prometheus: right-Pa55word\n",
    "missing certificate": (
        "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n"
    ),
    "not YAML": "tls_server_config: [\n",
}


@pytest.mark.parametrize("case", sorted(BAD_WEB_CONFIGS))
def test_an_invalid_web_config_stops_the_start_with_exit_2(tmp_path: Path, case: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(BAD_WEB_CONFIGS[case])
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--dsn", "postgresql://nobody@127.0.0.1:1/x",
         "--listen", f"127.0.0.1:{free_port()}", "--web.config.file", str(web)],
        cwd=REPO_ROOT, env=cli_env(None), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(web) in result.stderr
    assert "right-Pa55word" not in result.stderr  # a plaintext password put in the hash's place


# --- basic auth under a flood, response headers ---------------------------------------------------------


@asynccontextmanager
async def serving_with(
    exporter: object, web_config: WebConfig
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """Serve ``exporter`` with ``web_config`` over real HTTP on a loopback port."""
    server = TestServer(make_app(exporter, web_config), host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield session, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def unreachable_exporter() -> object:
    """An exporter whose one target refuses connections: enough for endpoints that need no database."""
    return exporter_for(
        TargetConfig(name="gone", dsn=f"postgresql://x@127.0.0.1:{free_port()}/x"), sampler=False
    )


async def test_configured_headers_are_on_every_response_the_refusals_included() -> None:
    hashed = bcrypt.hashpw(RIGHT.encode(), bcrypt.gensalt(rounds=4)).decode()
    headers = {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}
    web_config = WebConfig(users={USER: hashed}, headers=headers)
    async with serving_with(unreachable_exporter(), web_config) as (http, base):
        answers = [
            await status_of(http, "GET", f"{base}/healthz", False, headers=basic(USER, RIGHT)),
            await status_of(http, "GET", f"{base}/healthz", False),
            await status_of(http, "GET", f"{base}/healthz", False, headers=basic(USER, "wrong")),
            await status_of(http, "GET", f"{base}/no-such-page", False, headers=basic(USER, RIGHT)),
            await status_of(http, "GET", f"{base}/metrics?target=nope", False, headers=basic(USER, RIGHT)),
        ]
    assert [status for status, _, _ in answers] == [200, 401, 401, 404, 400]
    for _, _, got in answers:
        assert {name: got.get(name) for name in headers} == headers, got


async def test_a_slow_wrong_password_check_does_not_hold_up_other_requests() -> None:
    """While bcrypt checks a wrong password of a costly hash, requests of a remembered login are served.

    Not a timing assertion: it asserts the order of events. On the event loop, the costly check would
    have to finish before any other request could be answered.
    """
    web_config = WebConfig(
        users={
            USER: bcrypt.hashpw(RIGHT.encode(), bcrypt.gensalt(rounds=4)).decode(),
            "slow": bcrypt.hashpw(b"whatever", bcrypt.gensalt(rounds=15)).decode(),  # seconds per check
        }
    )
    async with serving_with(unreachable_exporter(), web_config) as (http, base):
        assert (await status_of(http, "GET", f"{base}/healthz", False, headers=basic(USER, RIGHT)))[0] == 200
        slow = asyncio.create_task(
            status_of(http, "GET", f"{base}/healthz", False, headers=basic("slow", "x"))
        )
        await asyncio.sleep(0.05)  # the slow request has reached the server and its check started
        served = [
            (await status_of(http, "GET", f"{base}/healthz", False, headers=basic(USER, RIGHT)))[0]
            for _ in range(20)
        ]
        still_checking = not slow.done()
        refused = (await slow)[0]
    assert served == [200] * 20
    assert still_checking, "the other requests waited for the costly check"
    assert refused == 401
