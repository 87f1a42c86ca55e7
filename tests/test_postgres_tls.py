"""TLS to PostgreSQL as the README describes it: sslmode and sslrootcert in the DSN, against a real
cluster serving a certificate from a CA made here. The exporter's session is encrypted (pg_stat_ssl
says so), and with the wrong CA verify-full refuses to connect instead of falling back."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import exporter_for, scrape, target_for, value

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import HOST, OS_SUPERUSER, PgCluster, TestDatabase, running_as_root
from exporter.errors import ConnectError

EXPORTER_ROLE = "prefect_exporter"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA; returns its PEM path, key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 signed by the CA; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    if running_as_root():  # the server runs as the postgres user and must own its key
        for path in (cert_path, key_path):
            shutil.chown(path, OS_SUPERUSER, OS_SUPERUSER)
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[PgCluster, Path, Path]]:
    """A cluster with ssl=on; yields it, the CA that signed its certificate and an unrelated CA."""
    base_dir = Path(tempfile.mkdtemp(prefix="ppe-pg-tls-"))
    base_dir.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
    certs = base_dir / "certs"
    certs.mkdir()
    ca_path, ca_key, ca_cert = make_ca(certs, "test-ca")
    other_ca, _, _ = make_ca(certs, "other-ca")
    cert_path, key_path = make_server_cert(certs, ca_key, ca_cert)
    if running_as_root():
        shutil.chown(certs, OS_SUPERUSER, OS_SUPERUSER)
    certs.chmod(0o755)
    settings = {"ssl": "on", "ssl_cert_file": str(cert_path), "ssl_key_file": str(key_path)}
    cluster = PgCluster.create(base_dir / "pg", settings=settings)
    cluster.start()
    try:
        yield cluster, ca_path, other_ca
    finally:
        cluster.destroy()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_db(tls_cluster: tuple[PgCluster, Path, Path], exporter_password: str) -> TestDatabase:
    cluster, _, _ = tls_cluster
    cluster.create_database("tls")
    cluster.psql("", "tls", file=ROLE_SCRIPT, variables={"exporter_password": exporter_password})
    return TestDatabase(
        name="tls",
        prefect_version=None,
        admin_dsn=cluster.dsn("tls"),
        exporter_dsn=cluster.dsn("tls", user=EXPORTER_ROLE, password=exporter_password),
    )


def with_tls(dsn: str, mode: str, root_cert: Path) -> str:
    return f"{dsn}?sslmode={mode}&sslrootcert={quote(str(root_cert), safe='/')}"


async def test_verify_full_with_the_servers_ca_connects_over_tls(
    tls_cluster: tuple[PgCluster, Path, Path], tls_db: TestDatabase
) -> None:
    _, ca_path, _ = tls_cluster
    target = target_for(tls_db, name="tls")
    exporter = exporter_for(replace(target, dsn=with_tls(target.dsn, "verify-full", ca_path)), sampler=False)
    try:
        series = await scrape(exporter)
        assert value(series, "prefect_db_up", target="tls") == 1.0
        admin = await asyncpg.connect(tls_db.admin_dsn, ssl=False)
        try:
            encrypted = await admin.fetch(
                "SELECT s.ssl, s.version FROM pg_stat_ssl AS s JOIN pg_stat_activity AS a USING (pid) "
                "WHERE a.application_name = 'prefect-db-exporter' AND a.datname = 'tls'"
            )
        finally:
            await admin.close()
        assert encrypted and all(row["ssl"] for row in encrypted), encrypted
        assert {row["version"] for row in encrypted} <= {"TLSv1.2", "TLSv1.3"}
    finally:
        await exporter.close()


async def test_verify_full_with_another_ca_refuses_to_connect(
    tls_cluster: tuple[PgCluster, Path, Path], tls_db: TestDatabase
) -> None:
    _, _, other_ca = tls_cluster
    target = target_for(tls_db, name="tls")
    wrong = replace(target, dsn=with_tls(target.dsn, "verify-full", other_ca))
    exporter = exporter_for(wrong, sampler=False)
    try:
        with pytest.raises(ConnectError, match=r"(?i)certificate"):
            await exporter.targets["tls"].validate(5.0)
        assert value(await scrape(exporter), "prefect_db_up", target="tls") == 0.0
    finally:
        await exporter.close()
