"""TLS and basic auth for the HTTP server, from a web-config file in the Prometheus exporter-toolkit format.

```yaml
tls_server_config:
  cert_file: /etc/prefect-db-exporter/tls.crt
  key_file: /etc/prefect-db-exporter/tls.key
basic_auth_users:
  prometheus: $2b$12$...   # bcrypt hash, e.g. from `htpasswd -nBC 12 prometheus`
```

Checking bcrypt hashes needs the ``bcrypt`` package (``pip install 'prefect-postgres-exporter[auth]'``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from exporter.errors import ConfigError, Problems
from exporter.validation import Section, as_path, one_of
from exporter.yamlload import LineDict, load_mapping, read_document

_TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
_TLS_KEYS = ("cert_file", "key_file", "min_version")
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def _bcrypt() -> ModuleType | None:
    try:
        import bcrypt
    except ImportError:
        return None
    return bcrypt


@dataclass(frozen=True)
class WebConfig:
    """What the HTTP server needs for TLS and basic auth; empty means plain HTTP without auth."""

    cert_file: Path | None = None
    key_file: Path | None = None
    min_version: str = "TLS12"
    users: Mapping[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return a server TLS context, or None for plain HTTP."""
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, remembering good answers."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        # bcrypt is slow on purpose; a scrape every few seconds must not pay for it every time.
        self._verified: set[bytes] = set()

    def allows(self, header: str | None) -> bool:
        """True when ``header`` carries the credentials of a configured user."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
        if any(hmac.compare_digest(key, known) for known in self._verified):
            return True
        bcrypt = _bcrypt()
        if bcrypt is None or not bcrypt.checkpw(password.encode(), hashed.encode()):
            return False
        self._verified.add(key)
        return True


def _existing_file(base: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        path = as_path(base)(value)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    return convert


def parse_web_config(text: str, source: str) -> WebConfig:
    """Validate a web-config document; raise ConfigError listing every problem."""
    problems = Problems(source)
    expected = "a mapping with tls_server_config: and/or basic_auth_users:"
    document = load_mapping(text, problems, expected, empty_ok=True)
    if document is None:
        raise ConfigError(f"invalid web config {source}", problems.items)
    top = Section(document, "", problems, _TOP_KEYS)
    base = Path(source).resolve().parent
    cert = key = None
    min_version = "TLS12"
    tls = top.section("tls_server_config", _TLS_KEYS)
    if tls is not None:
        cert = tls.get("cert_file", _existing_file(base))
        key = tls.get("key_file", _existing_file(base))
        min_version = tls.get("min_version", one_of(*_TLS_VERSIONS), "TLS12")
    users: dict[str, str] = {}
    raw_users = document.get("basic_auth_users")
    if raw_users is not None:
        if not isinstance(raw_users, LineDict):
            top.problem("basic_auth_users", "expected a mapping of user name: bcrypt hash")
        else:
            for user, hashed in raw_users.items():
                if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                    top.problem(
                        "basic_auth_users", f"{user}: expected a bcrypt hash ($2y$… from htpasswd -B)"
                    )
                else:
                    users[str(user)] = hashed
        if users and _bcrypt() is None:
            top.problem(
                "basic_auth_users",
                "checking bcrypt hashes needs the bcrypt package: "
                "pip install 'prefect-postgres-exporter[auth]'",
            )
    if problems.items:
        raise ConfigError(f"invalid web config {source}", problems.items)
    return WebConfig(cert, key, min_version, users)


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the web-config file at ``path``."""
    return parse_web_config(read_document(path, ConfigError, "web config"), str(path))
