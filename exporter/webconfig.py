"""TLS and basic auth for the HTTP server, from a web-config file in the Prometheus exporter-toolkit format.

```yaml
tls_server_config:
  cert_file: /etc/prefect-db-exporter/tls.crt
  key_file: /etc/prefect-db-exporter/tls.key
basic_auth_users:
  prometheus: $2b$12$...   # bcrypt hash, e.g. from `htpasswd -nBC 12 prometheus`
http_server_config:
  headers:                 # added to every response, as the exporter-toolkit allows
    X-Frame-Options: deny
```

Anything but a mapping is an error: a typo must not turn authentication off. An empty file is allowed
(the toolkit allows it) and means plain HTTP without authentication, which is logged at warning.

Checking bcrypt hashes needs the ``bcrypt`` package (``pip install 'prefect-postgres-exporter[auth]'``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from exporter.errors import ConfigError, Problems
from exporter.validation import Section, as_bool, as_path, one_of
from exporter.yamlload import LineDict, load_mapping, read_document

log = logging.getLogger(__name__)

_TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
_TLS_KEYS = ("cert_file", "key_file", "min_version")
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_HTTP_KEYS = ("headers", "http2")
# The response headers the exporter-toolkit lets a web config set, with the values it allows
# (empty: any value). Its list is closed on purpose, so every Prometheus exporter takes the same file.
HEADER_VALUES: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}


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
    # Extra headers for every response (http_server_config.headers).
    headers: Mapping[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return a server TLS context, or None for plain HTTP."""
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, off the event loop.

    bcrypt is slow on purpose (a quarter of a second at cost 12). Run on the event loop, a flood of
    wrong passwords would stall every scrape and the sampler, so checks run in a small pool of their
    own, at most ``max_waiting`` queued (beyond that a request is refused without a check, so a flood
    cannot build an unbounded backlog). A successful check is remembered for ``ttl`` seconds, keyed by
    a digest of user, password and hash (never the password itself), so a scrape every few seconds
    pays for bcrypt once; failures are never remembered, as anyone could fill such a cache.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        ttl: float = 60.0,
        workers: int = 1,
        max_waiting: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = dict(users)
        self.ttl = ttl
        self.max_waiting = max_waiting
        self.clock = clock
        # bcrypt releases the GIL; one worker leaves the other cores to the event loop and the queries.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="basic-auth")
        self._verified: dict[bytes, float] = {}
        self._waiting = 0
        self.checks = 0  # bcrypt checks run (cache misses), for tests and benchmarks
        self.refused_busy = 0  # requests refused because too many checks were queued

    def _credentials(self, header: str | None) -> tuple[str, str, str] | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        return None if hashed is None else (user, password, hashed)

    async def allows(self, header: str | None) -> bool:
        """True when ``header`` carries the credentials of a configured user."""
        found = self._credentials(header)
        if found is None:
            return False
        user, password, hashed = found
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
        now = self.clock()
        if self._verified.get(key, 0.0) > now:
            return True
        bcrypt = _bcrypt()
        if bcrypt is None:
            return False
        if self._waiting >= self.max_waiting:
            self.refused_busy += 1
            return False
        self._waiting += 1
        self.checks += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._pool, bcrypt.checkpw, password.encode(), hashed.encode())
        finally:
            self._waiting -= 1
        if ok:
            self._verified = {k: until for k, until in self._verified.items() if until > now}
            self._verified[key] = self.clock() + self.ttl
        return bool(ok)

    def close(self) -> None:
        """Stop the checking threads (at shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _existing_file(base: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        path = as_path(base)(value)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    return convert


def _read_users(top: Section, raw_users: object) -> dict[str, str]:
    users: dict[str, str] = {}
    if not isinstance(raw_users, LineDict) or not raw_users:
        # `basic_auth_users:` with nothing under it (or a list) would otherwise mean "no auth".
        top.problem(
            "basic_auth_users",
            "expected a mapping of user name: bcrypt hash; remove the key to serve without authentication",
        )
        return users
    for user, hashed in raw_users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            top.problem("basic_auth_users", f"{user}: expected a bcrypt hash ($2y$… from htpasswd -B)")
        else:
            users[str(user)] = hashed
    if users and _bcrypt() is None:
        top.problem(
            "basic_auth_users",
            "checking bcrypt hashes needs the bcrypt package: pip install 'prefect-postgres-exporter[auth]'",
        )
    return users


def _read_headers(http: Section) -> dict[str, str]:
    headers: dict[str, str] = {}
    raw = http.mapping.get("headers")
    if raw is None:
        return headers
    if not isinstance(raw, LineDict):
        http.problem("headers", "expected a mapping of header name: value")
        return headers
    for name, value in raw.items():
        allowed = HEADER_VALUES.get(name)
        if allowed is None:
            known = ", ".join(HEADER_VALUES)
            http.problem("headers", f"{name}: this header cannot be configured; allowed: {known}")
        elif not isinstance(value, str) or not value:
            http.problem("headers", f"{name}: expected a non-empty text value")
        elif allowed and value not in allowed:
            http.problem("headers", f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        elif "\r" in value or "\n" in value:
            http.problem("headers", f"{name}: a header value cannot contain a line break")
        else:
            headers[name] = value
    return headers


def _read_http(top: Section) -> dict[str, str]:
    if "http_server_config" in top.mapping and top.mapping["http_server_config"] is None:
        top.problem("http_server_config", "must not be empty; remove the key or set headers:")
    http = top.section("http_server_config", _HTTP_KEYS)
    if http is None:
        return {}
    # The toolkit turns HTTP/2 on by default; this server speaks HTTP/1.1 only, so say so rather than
    # accept a setting that would do nothing.
    if http.get("http2", as_bool, False):
        http.problem("http2", "this exporter serves HTTP/1.1 only; remove http2 or set it to false")
    return _read_headers(http)


def parse_web_config(text: str, source: str) -> WebConfig:
    """Validate a web-config document; raise ConfigError listing every problem."""
    problems = Problems(source)
    expected = "a mapping with tls_server_config:, basic_auth_users: and/or http_server_config:"
    document = load_mapping(text, problems, expected, empty_ok=True)
    if document is None:
        raise ConfigError(f"invalid web config {source}", problems.items)
    top = Section(document, "", problems, _TOP_KEYS)
    base = Path(source).resolve().parent
    cert = key = None
    min_version = "TLS12"
    if "tls_server_config" in document and document["tls_server_config"] is None:
        top.problem("tls_server_config", "must not be empty; remove the key to serve plain HTTP")
    tls = top.section("tls_server_config", _TLS_KEYS)
    if tls is not None:
        cert = tls.get("cert_file", _existing_file(base))
        key = tls.get("key_file", _existing_file(base))
        min_version = tls.get("min_version", one_of(*_TLS_VERSIONS), "TLS12")
    users = _read_users(top, document["basic_auth_users"]) if "basic_auth_users" in document else {}
    headers = _read_http(top)
    if problems.items:
        raise ConfigError(f"invalid web config {source}", problems.items)
    return WebConfig(cert, key, min_version, users, headers)


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the web-config file at ``path``; warn when it leaves the endpoint open."""
    config = parse_web_config(read_document(path, ConfigError, "web config"), str(path))
    if not config.users:
        log.warning(
            "web config sets no basic_auth_users: the endpoints are open to anyone who can reach them",
            extra={"fields": {"web_config": str(path)}},
        )
    return config
