"""Real Prometheus and Alertmanager servers for tests, and a webhook receiver for their notifications.

Each server runs Debian's binary on a free loopback port (never a default port: a system
Prometheus may already own 9090) with a temporary storage directory, and is used as an async
context manager::

    async with Prometheus({"global": {...}, "scrape_configs": [...]}) as prom:
        series = await prom.query("up")

    async with WebhookReceiver() as hook, Alertmanager(config) as am:
        await am.post_alerts([{"labels": {"alertname": "X", "severity": "critical"}}])
        delivery = await hook.wait_for(lambda d: d.path == "/pager")

Leaving the ``async with`` block (or calling ``stop()``) terminates the process, kills it if it
does not exit, and removes its directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp
import yaml
from aiohttp import web

HOST = "127.0.0.1"
PROMETHEUS_BINARIES = ("/usr/bin/prometheus", "prometheus")
ALERTMANAGER_BINARIES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
PR_SET_PDEATHSIG = 1

__all__ = [
    "Alertmanager",
    "Delivery",
    "PromStackError",
    "Prometheus",
    "WebhookReceiver",
    "find_binary",
]


class PromStackError(RuntimeError):
    """A Prometheus or Alertmanager binary is missing, failed to start, or answered with an error."""


def find_binary(candidates: Sequence[str], package: str) -> str:
    """Return the first of ``candidates`` that exists (absolute path or on PATH)."""
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise PromStackError(
        f"none of {', '.join(candidates)} found: `bash .ci/run` installs them (apt-get install {package})"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process is killed outright, the kernel sends the
    # server SIGTERM instead of leaving it running. (Linux only; elsewhere stop() is the only way.)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Server:
    """A server process on a free loopback port with its own temporary directory."""

    name: ClassVar[str]
    binaries: ClassVar[tuple[str, ...]]
    package: ClassVar[str]

    def __init__(
        self,
        config: Mapping[str, Any] | Path,
        *,
        binary: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.port = 0
        self.directory: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, without a trailing slash."""
        if not self.port:
            raise PromStackError(f"{self.name} is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        if self.directory is None:
            raise PromStackError(f"{self.name} is not started")
        return self.directory / f"{self.name}.log"

    def _argv(self, binary: str, config_path: Path, data_dir: Path, port: int) -> list[str]:
        raise NotImplementedError

    async def start(self) -> None:
        """Start the server and wait until it answers ``/-/ready``."""
        binary = self.binary or find_binary(self.binaries, self.package)
        self.directory = Path(tempfile.mkdtemp(prefix=f"ppe-{self.name}-"))
        if isinstance(self.config, Path):
            config_path = self.config.resolve()
        else:
            config_path = self.directory / f"{self.name}.yml"
            config_path.write_text(yaml.safe_dump(dict(self.config), sort_keys=False))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            # A free port can be taken between picking and binding it: try a few.
            for _ in range(3):
                self.port = _free_port()
                if await self._spawn(binary, config_path):
                    return
            raise PromStackError(f"{self.name} found no free port:\n{_tail(self.log_path)}")
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, binary: str, config_path: Path) -> bool:
        assert self.directory is not None
        data_dir = self.directory / "data"
        data_dir.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv(binary, config_path, data_dir, self.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.directory,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                if "address already in use" in _tail(self.log_path):
                    self._process = None
                    return False
                raise PromStackError(
                    f"{self.name} exited with {self._process.returncode}:\n{_tail(self.log_path)}"
                )
            if await self._ready():
                return True
            await asyncio.sleep(0.1)
        raise PromStackError(f"{self.name} not ready after {self.ready_timeout:g}s:\n{_tail(self.log_path)}")

    async def _ready(self) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/-/ready") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def stop(self) -> None:
        """Terminate the server (kill it after 10 s) and remove its directory; safe to repeat."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        self.port = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request to the server's API and return its decoded JSON body."""
        if self._session is None:
            raise PromStackError(f"{self.name} is not started")
        async with self._session.request(method, f"{self.url}{path}", **kwargs) as response:
            text = await response.text()
            if response.status >= 400:
                raise PromStackError(f"{self.name} {method} {path}: HTTP {response.status}: {text}")
            return json.loads(text) if text else None


class Prometheus(_Server):
    """Debian's Prometheus with ``--web.enable-lifecycle`` and a two-hour retention."""

    name = "prometheus"
    binaries = PROMETHEUS_BINARIES
    package = "prometheus"

    def _argv(self, binary: str, config_path: Path, data_dir: Path, port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address={HOST}:{port}",
            "--web.enable-lifecycle",
        ]

    async def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self.request(method, f"/api/v1/{path}", **kwargs)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PromStackError(f"prometheus {path}: {body}")
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Evaluate an instant query (now, or at Unix time ``at``) and return its result list."""
        form = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        data = await self._api("POST", "query", data=form)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        """Return the pending and firing alerts of the loaded rules."""
        data = await self._api("GET", "alerts")
        alerts: list[dict[str, Any]] = data["alerts"]
        return alerts

    async def rules(self) -> list[dict[str, Any]]:
        """Return the loaded rule groups with each rule's health and last error."""
        data = await self._api("GET", "rules")
        groups: list[dict[str, Any]] = data["groups"]
        return groups

    async def targets(self) -> list[dict[str, Any]]:
        """Return the active scrape targets with their health and last scrape."""
        data = await self._api("GET", "targets", params={"state": "active"})
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    async def reload(self) -> None:
        """Re-read the configuration file and rule files."""
        await self.request("POST", "/-/reload")


class Alertmanager(_Server):
    """Debian's Alertmanager with gossip clustering switched off."""

    name = "alertmanager"
    binaries = ALERTMANAGER_BINARIES
    package = "prometheus-alertmanager"

    def _argv(self, binary: str, config_path: Path, data_dir: Path, port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={data_dir}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",
        ]

    async def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Post alerts as Prometheus does (API v2): each a mapping with labels, annotations, ..."""
        await self.request("POST", "/api/v2/alerts", json=list(alerts))

    async def alerts(self, *matchers: str) -> list[dict[str, Any]]:
        """Return the alerts Alertmanager holds, with their status (``inhibitedBy``, ``silencedBy``)."""
        result: list[dict[str, Any]] = await self.request(
            "GET", "/api/v2/alerts", params=[("filter", m) for m in matchers]
        )
        return result


@dataclass(frozen=True)
class Delivery:
    """One notification POSTed to the webhook receiver."""

    path: str
    payload: dict[str, Any]

    @property
    def receiver(self) -> str:
        """Name of the Alertmanager receiver that sent it."""
        return str(self.payload.get("receiver", ""))

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it carries."""
        alerts: list[dict[str, Any]] = self.payload.get("alerts", [])
        return alerts

    def labels(self, name: str) -> set[str]:
        """The values of label ``name`` across its alerts."""
        return {a["labels"][name] for a in self.alerts if name in a.get("labels", {})}


class WebhookReceiver:
    """An HTTP server on a free loopback port that records every JSON body POSTed to any path."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    def url(self, path: str = "/") -> str:
        """The URL to give Alertmanager for ``path``."""
        if not self.port:
            raise PromStackError("webhook receiver is not started")
        return f"http://{HOST}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        async with self._changed:
            self.deliveries.append(Delivery(request.path, payload))
            self._changed.notify_all()
        return web.Response(text="ok")

    async def start(self) -> None:
        """Start listening."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bind the socket ourselves: port 0 then asking the site which port it got is not public API.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop listening; safe to repeat."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.port = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[Delivery], bool], timeout: float = 30.0) -> Delivery:
        """Return the first delivery (past or future) that satisfies ``predicate``."""

        def match() -> Delivery | None:
            return next((d for d in self.deliveries if predicate(d)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: match() is not None), timeout)
            except TimeoutError:
                paths = [(d.path, sorted(d.labels("alertname"))) for d in self.deliveries]
                raise PromStackError(f"no matching delivery within {timeout:g}s; got {paths}") from None
        found = match()
        assert found is not None
        return found
