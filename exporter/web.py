"""HTTP endpoints: /metrics, /healthz, /readyz, /doctor and a small status page at /."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

from exporter.doctor.html import render_html
from exporter.doctor.jsonreport import render_json
from exporter.doctor.run import diagnose
from exporter.registry import Exporter
from exporter.status import CollectorState, CollectorStatus, TargetStatus
from exporter.webconfig import BasicAuth, WebConfig

# Re-reads the configuration and applies it; returns None on success, else what was wrong.
Reloader = Callable[[], Awaitable[str | None]]
RELOAD_KEY: web.AppKey[Reloader] = web.AppKey("reload")

log = logging.getLogger(__name__)

EXPORTER_KEY = web.AppKey("exporter", Exporter)
STARTUP_KEY = web.AppKey("startup", asyncio.Task[None])
TELEMETRY_PATH_KEY = web.AppKey("telemetry_path", str)
# Answer before Prometheus gives up on the scrape, so partial results still arrive.
SCRAPE_TIMEOUT_MARGIN = 0.5


def scrape_timeout(request: web.Request, configured: float) -> float:
    """Return how long this scrape may take: the configured limit or Prometheus' own, if shorter."""
    header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    try:
        announced = float(header) - SCRAPE_TIMEOUT_MARGIN if header else configured
    except ValueError:
        announced = configured
    return max(0.5, min(configured, announced))


def _accepted(header: str) -> list[tuple[str, dict[str, str], float]]:
    """The media types or codings of an Accept or Accept-Encoding header: (name, parameters, q)."""
    items = []
    for part in header.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if not name:
            continue
        values = {}
        for param in params:
            key, _, value = param.partition("=")
            values[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(values.pop("q", "1"))
        except ValueError:
            q = 0.0
        items.append((name.lower(), values, q))
    return items


# OpenMetrics versions whose text this exposition is (1.0.0; 0.0.1 is the same text format).
_OPENMETRICS_VERSIONS = ("", "1.0.0", "0.0.1")


def wants_openmetrics(accept: str) -> bool:
    """Whether the Accept header prefers OpenMetrics 1.0 to the Prometheus text format."""
    items = _accepted(accept)
    open_metrics = max(
        (
            q
            for name, params, q in items
            if name == "application/openmetrics-text" and params.get("version", "") in _OPENMETRICS_VERSIONS
        ),
        default=0.0,
    )
    text = max((q for name, _, q in items if name in ("text/plain", "*/*")), default=0.0)
    return open_metrics > 0 and open_metrics >= text


def wants_gzip(accept_encoding: str) -> bool:
    """Whether the Accept-Encoding header accepts gzip (named, or by ``*``)."""
    weights = {name: q for name, _, q in _accepted(accept_encoding)}
    return weights.get("gzip", weights.get("*", 0.0)) > 0


async def metrics(request: web.Request) -> web.Response:
    """Serve the metrics of every target, or of ``?target=NAME`` only (OpenMetrics and gzip on request)."""
    exporter = request.app[EXPORTER_KEY]
    target = request.query.get("target")
    if target is not None and exporter.target(target) is None:
        known = ", ".join(exporter.targets)
        raise web.HTTPBadRequest(text=f"unknown target {target[:100]!r}; known targets: {known}\n")
    open_metrics = wants_openmetrics(request.headers.get("Accept", ""))
    exposition = await exporter.scrape(
        scrape_timeout(request, exporter.config.scrape_timeout), target, open_metrics=open_metrics
    )
    headers = {
        "Content-Type": OPENMETRICS_CONTENT_TYPE if open_metrics else CONTENT_TYPE_LATEST,
        "Vary": "Accept, Accept-Encoding",
    }
    if wants_gzip(request.headers.get("Accept-Encoding", "")):
        # The results' text was deflated when they arrived: only this scrape's own lines are now.
        body = exposition.gzipped()
        headers["Content-Encoding"] = "gzip"
    else:
        body = exposition.body()
    return web.Response(body=body, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 while the process runs."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Answer 200 when the catalog is loaded and at least one target answers."""
    exporter = request.app[EXPORTER_KEY]
    if not exporter.ready:
        await exporter.refresh(timeout=2.0)
    if exporter.ready:
        return web.Response(text="ready\n")
    reasons = "\n".join(f"{t.name}: {t.last_error or 'not reachable yet'}" for t in exporter.status().targets)
    return web.Response(status=503, text=f"no target is reachable\n{reasons}\n")


def _background_section(target: TargetStatus) -> str:
    sampler, server_log = target.sampler, target.server_log
    if sampler is None:
        sampling = "sampler off"
    else:
        sampling = (
            f"sampler: {sampler.ticks} samples every {sampler.interval:g}s, "
            f"last took {sampler.last_duration * 1000:.1f} ms"
            + (f", last error: {sampler.last_error}" if sampler.last_error else "")
        )
    if server_log is None:
        reading = "no server_log configured: deadlocks are counted but not attributed to operations"
    elif server_log.last_error:
        reading = f"server log: {server_log.last_error}"
    else:
        reading = (
            f"server log: following {server_log.following} ({server_log.format}), "
            f"{server_log.deadlocks} deadlocks"
        )
    return f"<p>{html.escape(sampling)}<br>{html.escape(reading)}</p>"


def _collector_row(collector: CollectorStatus) -> str:
    latest = collector.latest
    if collector.state in (CollectorState.OK, CollectorState.FAILED) and latest is not None:
        state, detail = latest.status, latest.error or f"{latest.rows} rows"
    else:
        state, detail = collector.state.value, collector.reason or ""
    took = f"{latest.duration * 1000:.1f} ms" if latest else ""
    return (
        f"<tr><td>{html.escape(collector.name)}</td><td>{html.escape(state)}</td><td>{took}</td>"
        f"<td>{html.escape(detail)}</td><td>{html.escape(collector.description)}</td></tr>"
    )


def _target_section(target: TargetStatus) -> str:
    facts = target.facts
    status = "up" if target.up else f"down: {target.last_error or 'not reached yet'}"
    version = f"PostgreSQL {facts.server_version}" if facts else ""
    schema = ""
    if facts is not None:
        schema = (
            f"Prefect schema revision {facts.alembic_revision}"
            if facts.has_prefect_schema
            else "no Prefect schema found: only the PostgreSQL collectors run"
        )
    return (
        f"<h2>{html.escape(target.name)}</h2>"
        f"<p>{html.escape(target.dsn)} — {html.escape(status)}"
        f"<br>{html.escape(version)} {html.escape(schema)}</p>"
        "<table><tr><th>collector</th><th>status</th><th>took</th><th>detail</th><th>what</th></tr>"
        + "".join(_collector_row(c) for c in target.collectors)
        + "</table>"
        + _background_section(target)
    )


async def index(request: web.Request) -> web.Response:
    """List targets and the health of every collector."""
    status = request.app[EXPORTER_KEY].status()
    path = html.escape(request.app[TELEMETRY_PATH_KEY])
    uptime = time.time() - status.started
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>prefect-db-exporter</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top}</style>"
        f"</head><body><h1>prefect-db-exporter {html.escape(status.version)}</h1>"
        f"<p><a href='{path}'>{path}</a> · <a href='/healthz'>/healthz</a> · "
        f"<a href='/readyz'>/readyz</a> · <a href='/doctor'>/doctor</a> "
        f"— up {uptime:.0f}s, config: {html.escape(status.config_source)}</p>"
        + "".join(_target_section(t) for t in status.targets)
        + "</body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def doctor(request: web.Request) -> web.Response:
    """Diagnose every target (or ``?target=NAME``): HTML, or JSON for ``Accept: application/json``."""
    exporter = request.app[EXPORTER_KEY]
    target = request.query.get("target")
    if target is not None and exporter.target(target) is None:
        raise web.HTTPBadRequest(
            text=f"unknown target {target[:100]!r}; known targets: {', '.join(exporter.targets)}\n"
        )
    report, _ = await diagnose(exporter, target, running=True)
    if "application/json" in request.headers.get("Accept", ""):
        return web.Response(text=render_json(report), content_type="application/json")
    return web.Response(text=render_html(report), content_type="text/html")


async def reload(request: web.Request) -> web.Response:
    """Reload the configuration and the catalog (``POST /-/reload``, with --web.enable-lifecycle)."""
    problem = await request.app[RELOAD_KEY]()
    if problem is not None:
        return web.Response(status=500, text=f"reload failed; the previous configuration stays:\n{problem}\n")
    return web.Response(text="reloaded\n")


def basic_auth_middleware(auth: BasicAuth) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuse requests without the credentials of a configured user."""

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not await auth.allows(request.headers.get("Authorization")):
            return web.Response(
                status=401,
                text="unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="prefect-db-exporter", charset="UTF-8"'},
            )
        return await handler(request)

    return check


ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def response_headers(headers: Mapping[str, str]) -> ResponseHook:
    """Add the web config's headers to every response, the refusals and errors included."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    return add


async def _close_auth(auth: BasicAuth) -> None:
    auth.close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    exporter = app[EXPORTER_KEY]
    exporter.start_background()
    # Connect and validate collectors at start-up, so a broken collector is reported before any scrape.
    app[STARTUP_KEY] = asyncio.create_task(exporter.refresh(exporter.config.scrape_timeout))
    yield
    app[STARTUP_KEY].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app[STARTUP_KEY]
    await exporter.close()


def make_app(
    exporter: Exporter,
    web_config: WebConfig | None = None,
    reloader: Reloader | None = None,
    telemetry_path: str = "/metrics",
) -> web.Application:
    """Build the aiohttp application serving ``exporter`` (with basic auth and /-/reload when asked)."""
    middlewares = []
    auth = BasicAuth(web_config.users) if web_config is not None and web_config.users else None
    if auth is not None:
        middlewares.append(basic_auth_middleware(auth))
    app = web.Application(client_max_size=1024, middlewares=middlewares)
    if auth is not None:
        app.on_cleanup.append(lambda _: _close_auth(auth))
    if web_config is not None and web_config.headers:
        app.on_response_prepare.append(response_headers(web_config.headers))
    app[EXPORTER_KEY] = exporter
    if reloader is not None:
        app[RELOAD_KEY] = reloader
        app.router.add_post("/-/reload", reload)
    app.router.add_get("/", index)
    app[TELEMETRY_PATH_KEY] = telemetry_path
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/doctor", doctor)
    app.cleanup_ctx.append(_lifecycle)
    return app
