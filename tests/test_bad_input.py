"""Bad input never gets a traceback: random config files and collector headers, a broken config on the
command line, odd data in Prefect's tables, 10,000 work queues, and malformed HTTP requests."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from helpers import exporter_for, parse, serving, target_for, value
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from devtools import seed
from devtools.pgcluster import TestDatabase
from devtools.prefect_env import PREFECT_VERSIONS
from devtools.reference_exposition import catalog_series, reference_text
from exporter.catalog import parse_collector
from exporter.config import Config, parse_config
from exporter.errors import CatalogError, ConfigError
from exporter.validation import Problems
from exporter.webconfig import WebConfig, parse_web_config

REPO_ROOT = Path(__file__).resolve().parents[1]
NEWEST = PREFECT_VERSIONS[-1]
SOURCE = "/etc/prefect-db-exporter/exporter.yaml"
FUZZ = settings(
    database=None,  # no .hypothesis directory in the work tree
    # CI replays the same examples on every run; exploring new ones is for development runs.
    derandomize=bool(os.environ.get("CI")),
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

VALID_CONFIG = """\
listen: 127.0.0.1:9650
scrape_timeout: 8s
max_series_per_metric: 2000
targets:
  - name: prod
    dsn: postgresql://prefect_exporter@db:5432/prefect
    pool_size: 2
    connect_timeout: 5s
    statement_timeout: 10s
    lock_timeout: 500ms
    idle_in_transaction_timeout: 10s
  - name: staging
    dsn: postgresql://prefect_exporter@staging-db/prefect?sslmode=require
thresholds:
  pending_stale_seconds: 600
  late_after_seconds: 15s
sampler:
  enabled: true
  interval: 1s
collectors:
  exclude: [tag_concurrency_limits]
log:
  level: info
  format: json
"""

CONFIG_KEYS = (
    "listen", "scrape_timeout", "max_series_per_metric", "targets", "collectors", "thresholds", "sampler",
    "log", "web_config_file", "name", "dsn", "password_env", "password_file", "pool_size",
    "connect_timeout", "statement_timeout", "lock_timeout", "idle_in_transaction_timeout", "server_log",
    "server_log_format", "include", "exclude", "extra_query_dirs", "operations_file", "enabled",
    "interval", "level", "format", "pending_stale_seconds", "late_after_seconds",
)  # fmt: skip
HEADER_KEYS = (
    "description", "ttl", "timeout", "requires", "mode", "incremental", "metrics", "name", "type", "help",
    "value", "labels", "fold", "server_version_min", "server_version_max", "tables", "columns",
    "alembic_revisions", "key", "cursor", "overlap", "limit",
)  # fmt: skip
# Scalars that PyYAML (or the exporter) treats specially.
TRICKY_SCALARS = (
    "2001-13-45", "2020-02-30 25:61:61", "!!int 0xZZ", "!!float abc", "!!binary '%%%'", "!!timestamp x",
    "!!python/object:os.system x", "!!set {a, b}", "!!omap [a: 1]", "&a x", "*a", "*nope", "<<: 1",
    "<<: *a", "? [a, b]", "~", "null", ".nan", "-.inf", "0o777", "0x1F", "1e400", "-0", "1_000",
    "15s", "500ms", "0s", "-5s", "9" * 40, "postgresql://u:p@h:5432/d", "postgresql://[::1/d",
    "postgresql://h:99999999/d", "http://x", '"a\\0b"', '"\\x00"', '"\\ud800"', "'''", "|", ">",
    "- -", "{", "[", "}", "]", ": :", "#", "%YAML 1.1", "---", "...", "\t", "\u202e", "🚀",
    "gauge", "counter", "sum", "max", "incremental", "snapshot",
)  # fmt: skip
# When PyYAML itself cannot build the document, the problem has no key path.
DOCUMENT_LEVEL = ("not valid YAML", "expected a mapping")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["15s", "500ms", "5m", "1h", "0", "-1s", "postgresql://u@h/db", "h:9650", "json"]),
)
keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)),
    max_leaves=25,
)


def fragments(words: tuple[str, ...]) -> st.SearchStrategy[str]:
    """YAML-ish text assembled from keys, tricky scalars and indentation."""
    token = st.one_of(
        st.sampled_from(words).map(lambda k: f"{k}:"),
        st.sampled_from(TRICKY_SCALARS),
        st.text(max_size=8),
        st.sampled_from(["\n", "\n  ", "\n    - ", " ", "- ", ": ", ", "]),
    )
    return st.lists(token, max_size=30).map(" ".join)


def mutate(text: str, data: st.DataObject) -> str:
    """Apply a few random edits (delete, insert, duplicate or swap lines, re-indent) to ``text``."""
    for _ in range(data.draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True) or [""]
        op = data.draw(st.sampled_from(["delete", "insert", "dup", "swap", "indent", "replace"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        j = data.draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            start = data.draw(st.integers(0, len(text)))
            text = text[:start] + text[start + data.draw(st.integers(1, 20)) :]
            continue
        if op == "insert":
            at = data.draw(st.integers(0, len(text)))
            text = (
                text[:at]
                + data.draw(st.one_of(st.sampled_from(TRICKY_SCALARS), st.text(max_size=5)))
                + text[at:]
            )
            continue
        if op == "dup":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * data.draw(st.integers(0, 6)) + lines[i].lstrip(" ")
        else:
            key, sep, _ = lines[i].partition(":")
            lines[i] = f"{key}{sep or ':'} {data.draw(st.sampled_from(TRICKY_SCALARS))}\n"
        text = "".join(lines)
    return text


def top_keys(text: str) -> list[str]:
    """Return the top-level keys of ``text`` as the exporter names them (empty when not a mapping)."""
    try:
        document = yaml.safe_load(text)
    except Exception:
        return []
    return [str(k) for k in document] if isinstance(document, dict) else []


def check_problems(problems: tuple[str, ...] | list[str], source: str, known: list[str]) -> None:
    """Every problem is one line ``<source>[:line]: <path>: <message>`` (or a document-level message)."""
    assert problems, "an error without any problem"
    pattern = re.compile(rf"^{re.escape(source)}(?::\d+)?: (.+)$", re.S)
    for problem in problems:
        match = pattern.match(problem)
        assert match, f"problem does not start with {source}: {problem!r}"
        rest = match.group(1)
        if rest.startswith(DOCUMENT_LEVEL):
            continue
        assert any(rest.startswith(f"{key}{sep}") for key in known for sep in (": ", ".", "[")) or (
            "" in known and rest.startswith("unknown key")
        ), f"problem names no key path: {problem!r}"


def check_config(text: str) -> Config | None:
    """parse_config returns a Config or raises ConfigError with well-formed problems, never anything else."""
    try:
        return parse_config(text, SOURCE)
    except ConfigError as error:
        check_problems(error.problems, SOURCE, [*CONFIG_KEYS[:9], *top_keys(text)])
        assert "Traceback" not in str(error)
        return None


# --- the config file --------------------------------------------------------------------------------


def test_the_valid_config_is_valid() -> None:
    config = parse_config(VALID_CONFIG, SOURCE)
    assert [t.name for t in config.targets] == ["prod", "staging"]


@FUZZ
@given(documents)
def test_random_yaml_documents_as_config(document: Any) -> None:
    check_config(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS[:9]), documents, max_size=9))
@example({"web_config_file": "\x00"})  # found by this test: Path.resolve() raises on a NUL byte
def test_random_values_under_the_real_keys(document: dict[str, Any]) -> None:
    check_config(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(st.data())
def test_mutations_of_a_valid_config(data: st.DataObject) -> None:
    check_config(mutate(VALID_CONFIG, data))


@FUZZ
@given(fragments(CONFIG_KEYS))
@example("a: 2001-13-45")  # PyYAML's timestamp constructor raises ValueError, not YAMLError
@example("listen: !!int 0xZZ")
@example("scrape_timeout: !!float abc")
@example("targets: " + "[" * 2000 + "]" * 2000)  # deep nesting: RecursionError inside PyYAML
@example('collectors: {extra_query_dirs: ["a\\0b"]}')  # a NUL byte in a path
@example('collectors: {operations_file: "a\\0b"}')
@example('web_config_file: "a\\0b"')
def test_yaml_fragments_as_config(text: str) -> None:
    check_config(text)


def test_unreadable_config_files(tmp_path: Path) -> None:
    from exporter.config import load_config

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"targets: \xff\xfe\x00")
    for path in (binary, tmp_path / "missing.yaml", tmp_path):
        with pytest.raises(ConfigError):
            load_config(path)


# --- the web config ---------------------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
        fragments(("tls_server_config", "basic_auth_users", "cert_file", "key_file", "min_version")),
    )
)
@example("basic_auth_users: {2001-13-45: x}")
@example("tls_server_config: {cert_file: !!int 0xZZ}")
@example('tls_server_config: {cert_file: "a\\0b", key_file: k}')
def test_random_web_configs(text: str) -> None:
    try:
        assert isinstance(parse_web_config(text, SOURCE), WebConfig)
    except ConfigError as error:
        known = ["tls_server_config", "basic_auth_users", "http_server_config", *top_keys(text)]
        check_problems(error.problems, SOURCE, known)


# --- collector headers --------------------------------------------------------------------------------

SQL_BODIES = (
    "SELECT 1 AS v;",
    "SELECT 1 AS v FROM pg_class LIMIT 100",
    "",
    "SELECT $1 AS v;",
    "WITH x AS (SELECT 1 AS v) SELECT v, 'a' AS label FROM x;",
    "-- only a comment",
    "SELECT '$1' AS v; -- $2",
)


def collector_text(header: str, sql: str) -> str:
    """Return a collector file: ``header`` as ``-- `` comment lines, then ``sql``."""
    return "".join(f"-- {line}\n" for line in header.splitlines()) + sql


header_documents = st.one_of(
    documents,
    st.fixed_dictionaries(
        {
            "description": scalars,
            "metrics": st.lists(
                st.dictionaries(st.sampled_from(HEADER_KEYS), documents, max_size=6), max_size=3
            ),
        },
        optional={
            "ttl": scalars,
            "timeout": scalars,
            "mode": st.sampled_from(["snapshot", "incremental", "x"]),
            "incremental": st.dictionaries(st.sampled_from(HEADER_KEYS), documents, max_size=4),
            "requires": st.dictionaries(st.sampled_from(HEADER_KEYS), documents, max_size=4),
        },
    ),
)


def check_collector(path: Path, text: str) -> None:
    """parse_collector returns a spec or None with problems, every one naming the file; never raises."""
    problems = Problems(str(path))
    spec = parse_collector(path, text, problems)
    if spec is None:
        assert problems.items
    for problem in problems.items:
        assert problem.startswith(f"{path}:"), problem


@FUZZ
@given(header_documents, st.sampled_from(SQL_BODIES))
def test_random_collector_headers(header: Any, sql: str) -> None:
    check_collector(
        Path("/q/random_collector.sql"), collector_text(yaml.safe_dump(header, allow_unicode=True), sql)
    )


@FUZZ
@given(fragments(HEADER_KEYS), st.sampled_from(SQL_BODIES))
@example("description: x\nttl: 2001-13-45\nmetrics: []", "SELECT 1 AS v")
@example("description: !!int 0xZZ", "SELECT 1 AS v")
@example("metrics: " + "[" * 2000 + "]" * 2000, "SELECT 1 AS v")
def test_collector_header_fragments(header: str, sql: str) -> None:
    check_collector(Path("/q/fragment.sql"), collector_text(header, sql))


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=header_documents,
    sql=st.sampled_from(SQL_BODIES),
    stem=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
)
def test_load_catalog_on_random_files(tmp_path: Path, header: Any, sql: str, stem: str) -> None:
    from exporter.catalog import Catalog, load_catalog

    directory = tmp_path / uuid.uuid4().hex
    directory.mkdir()
    (directory / f"{stem}.sql").write_text(collector_text(yaml.safe_dump(header, allow_unicode=True), sql))
    (directory / "binary.sql").write_bytes(b"-- description: \xff\n")
    try:
        assert isinstance(load_catalog([directory]), Catalog)
    except CatalogError as error:
        for problem in error.problems:
            assert problem.startswith(str(directory)), problem


# --- the command line with a broken config -------------------------------------------------------------

BROKEN_CONFIGS = {
    "four problems": (
        "listen: nowhere\nscrape_timeout: soon\ntargets:\n  - dsn: mysql://db/prefect\n    pool_size: 9\n",
        4,
    ),
    "unknown keys": ("target:\n  - dsn: postgresql://db/prefect\nsampler: {enable: true}\n", 2),
    "invalid timestamp": ("targets: [{dsn: postgresql://db/prefect}]\nscrape_timeout: 2001-13-45\n", 1),
    "deep nesting": ("targets: " + "[" * 3000 + "]" * 3000 + "\n", 1),
    "NUL in a path": ('collectors: {extra_query_dirs: ["a\\0b"]}\n', 1),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_cli_with_a_broken_config_exits_2_with_one_line_per_problem(tmp_path: Path, case: str) -> None:
    text, count = BROKEN_CONFIGS[case]
    path = tmp_path / "exporter.yaml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert lines[0].startswith(f"prefect-db-exporter: invalid configuration file {path}"), lines
    problems = [line for line in lines[1:] if line.startswith("  - ")]
    assert len(problems) == count == len(lines) - 1, lines
    assert all(p.startswith(f"  - {path}:") for p in problems), problems


@pytest.mark.parametrize("port", ["notaport", "99999", "-1"])
def test_a_dsn_with_an_invalid_port_is_a_config_problem(port: str) -> None:
    """asyncpg raises ValueError/OverflowError on such a port at connect time: reject it up front."""
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets:\n  - dsn: postgresql://u@127.0.0.1:{port}/db\n", SOURCE)
    check_problems(caught.value.problems, SOURCE, ["targets"])
    assert any("targets[0].dsn" in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("port", ["notaport", "99999"])
def test_check_with_an_invalid_port_fails_without_a_traceback(port: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--check", "--dsn", f"postgresql://u@127.0.0.1:{port}/db"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (1, 2), result.stderr


# --- odd data in Prefect's tables ------------------------------------------------------------------------

ODD_NAMES = (
    'with "double quotes"',
    "with 'single quotes'",
    "back\\slash and \\n literally",
    "new\nline",
    "carriage\rreturn and\ttab",
    "ünïcödé 池 🚀 עברית \u202e",
    "x" * 200,
    "池" * 200,
    "<script>alert(1)</script>",
    'a,b="c"} x{y="z"',
    "other",
    " leading and trailing ",
    "",
)


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_odd_names_and_null_ish_values_round_trip(prefect_db: TestDatabase) -> None:
    """Odd names and NULL-ish or non-finite values: the exposition parses and every label round-trips."""
    # Quotes, backslashes, newlines, unicode, 200-character and empty names on pools, queues, workers and
    # limits; runs without a queue; NaN and +Inf values.
    conn = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        flow = await seed.create_flow(conn, "odd-flow")
        home = await seed.create_work_pool(conn, "odd-queues")
        for index, name in enumerate(ODD_NAMES):
            pool = await seed.create_work_pool(conn, name or "empty-queue-pool", concurrency_limit=None)
            queue = await seed.create_work_queue(
                conn, home.id, name, last_polled_ago=None if index % 2 else 5.0
            )
            await seed.create_flow_run(
                conn, flow_id=flow, queue_id=queue, state_type="PENDING", state_age=900
            )
            await seed.create_flow_run(conn, flow_id=flow, queue_id=queue, state_type="RUNNING", state_age=60)
            await seed.create_flow_run(
                conn, flow_id=flow, queue_id=queue, state_type="SCHEDULED", state_name="Late", state_age=120
            )
            await seed.create_worker(
                conn, pool.id, name, heartbeat_ago=10, interval=None if index % 2 else 30
            )
            await seed.create_concurrency_limit(
                conn,
                name or "empty",
                limit=3,
                active_slots=1,
                slot_decay_per_second=[0.5, math.nan, math.inf][index % 3],
            )
        # NULL-ish: a run on no queue and no deployment, a deployment on no queue.
        await seed.create_flow_run(conn, flow_id=flow, state_type="PENDING", state_age=900)
        await seed.create_deployment(conn, flow, None, "no-queue")
    finally:
        await conn.close()
    # Worker names reach a label only through the opt-in per-worker collector.
    exporter = exporter_for(target_for(prefect_db, name="odd"), enable=frozenset({"worker_heartbeats"}))
    async with serving(exporter) as (http, base):
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        # The exporter writes its samples directly; prometheus_client must have written the same bytes.
        reference = reference_text(exporter.catalog, catalog_series(exporter.catalog, text), ["odd"])
        assert reference in text
        async with http.get(f"{base}/metrics") as response:  # now from the cached sample lines
            assert reference in await response.text()
        async with http.get(f"{base}/") as response:
            assert response.status == 200
            assert "<script>alert(1)</script>" not in await response.text()
    families = list(text_string_to_metric_families(text))  # the official parser accepts it
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], float] = {}
    for family in families:
        for sample in family.samples:
            for key, label in sample.labels.items():
                labels.setdefault(key, set()).add(label)
            if "name" in sample.labels:
                values[(sample.name, sample.labels["name"])] = sample.value
    series = parse(text)
    failed = {
        dict(ls)["collector"]: v
        for (n, ls), v in series.items()
        if n == "prefect_db_exporter_collector_success" and v != 1.0
    }
    assert not failed, failed
    for name in ODD_NAMES:
        assert (name or "empty-queue-pool") in labels["work_pool"], name
        assert name in labels["work_queue"], name
        assert name in labels["worker"], name
        assert (name or "empty") in labels["name"], name
    decay = "prefect_db_concurrency_limit_slot_decay_per_second"
    assert math.isnan(values[(decay, ODD_NAMES[1])])
    assert values[(decay, ODD_NAMES[2])] == math.inf
    assert value(series, "prefect_db_up", target="odd") == 1.0


# --- 10,000 work queues in one pool -----------------------------------------------------------------------


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_ten_thousand_work_queues(prefect_db: TestDatabase) -> None:
    """10,000 queues in one pool: the scrape answers and every metric stays within the series cap."""
    # At most max_series_per_metric (2000) series per metric, the excess folded into one all-`other`
    # series, and the fold reported by prefect_db_exporter_series_folded.
    queues = 10_000
    conn = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        pool = await seed.create_work_pool(conn, "wide")
        await conn.execute(
            "INSERT INTO work_queue (name, work_pool_id, priority, last_polled) "
            "SELECT 'queue-' || lpad(i::text, 5, '0'), $1, i, now() - make_interval(secs => i) "
            "FROM generate_series(1, $2::int) AS i",
            pool.id,
            queues,
        )
        await conn.execute("ANALYZE work_queue")
    finally:
        await conn.close()
    exporter = exporter_for(target_for(prefect_db, name="wide"))
    cap = exporter.config.max_series_per_metric
    async with serving(exporter) as (http, base):
        started = time.monotonic()
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        cold = time.monotonic() - started
        started = time.monotonic()
        async with http.get(f"{base}/metrics") as response:
            await response.read()
        cached = time.monotonic() - started
    per_metric: dict[str, int] = {}
    folded_series: dict[str, dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            per_metric[sample.name] = per_metric.get(sample.name, 0) + 1
            data_labels = {k: v for k, v in sample.labels.items() if k != "target"}
            if data_labels and all(v == "other" for v in data_labels.values()):
                folded_series[sample.name] = data_labels
    series = parse(text)
    folded = {
        dict(ls)["metric"]: v
        for (n, ls), v in series.items()
        if n == "prefect_db_exporter_series_folded" and v
    }
    duration = value(series, "prefect_db_exporter_collector_duration_seconds", collector="work_queues")
    print(
        f"\n[figures] 10,000 work queues: first_scrape_s={cold:.2f} cached_scrape_s={cached:.3f}"
        f" work_queues_collector_s={duration} series_total={sum(per_metric.values())}"
        f" exposition_kib={len(text.encode()) // 1024} folded={folded}",
        file=sys.stderr,
    )
    assert value(series, "prefect_db_exporter_collector_success", collector="work_queues") == 1.0
    assert max(per_metric.values()) <= cap, {m: n for m, n in per_metric.items() if n > cap}
    assert per_metric["prefect_db_work_queue_paused"] == cap
    assert folded["prefect_db_work_queue_paused"] == queues + 1 - (cap - 1)  # + the pool's default queue
    assert folded["prefect_db_work_queue_status"] == 3 * (queues + 1) - (cap - 1)
    for metric in folded:
        assert per_metric[metric] == cap and metric in folded_series, metric
    assert value(series, "prefect_db_work_queue_paused", work_pool="other", work_queue="other") == 0.0


# --- malformed HTTP requests ---------------------------------------------------------------------------


async def raw_request(port: int, data: bytes, timeout: float = 15.0) -> int:
    """Send raw bytes to the server and return the status code of its answer (0 when it just closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (ConnectionResetError, BrokenPipeError):
        return 0
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def get(path: str, headers: str = "") -> bytes:
    """A raw HTTP/1.1 GET request for ``path``."""
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n".encode()


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_malformed_http_requests_get_4xx_and_the_server_keeps_serving(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db, name="prod"))
    async with serving(exporter) as (http, base):
        port = int(base.rsplit(":", 1)[1])
        statuses: dict[str, int] = {}
        for path in ("/nope", "/metrics/", "/metricsx", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                     "//metrics", "/-/reload", "/metrics%00"):  # fmt: skip
            statuses[f"GET {path}"] = await raw_request(port, get(path))
        for method in ("PUT", "DELETE", "PATCH", "POST"):
            for path in ("/metrics", "/", "/healthz", "/readyz"):
                request = (
                    f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                statuses[f"{method} {path}"] = await raw_request(port, request.encode())
        statuses["64 KiB header"] = await raw_request(port, get("/metrics", f"X-Big: {'a' * 65536}\r\n"))
        statuses["1000 headers"] = await raw_request(
            port, get("/metrics", "".join(f"X-H{i}: v\r\n" for i in range(1000)))
        )
        statuses["64 KiB URL"] = await raw_request(port, get("/metrics?x=" + "a" * 65536))
        statuses["garbage request line"] = await raw_request(port, b"GARBAGE\x00\xff\r\n\r\n")
        statuses["bad Content-Length"] = await raw_request(
            port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
        )
        targets = {
            "long": "t" * 10_000,
            "unicode": "ünïcödé-🚀",
            "dot-dot": "../../etc/passwd",
            "empty": "",
            "NUL": "\x00",
            "newline": "prod\n",
            "quote": "prod'\"<x>",
        }
        for label, bad in targets.items():
            async with http.get(f"{base}/metrics", params={"target": bad}) as response:
                body = await response.text()
                statuses[f"target={label}"] = response.status
                assert len(body) < 1000, (label, len(body))
        statuses["target=%ff%fe"] = await raw_request(port, get("/metrics?target=%ff%fe"))
        # Odd scrape-timeout headers from Prometheus are ignored or clamped, never an error.
        timeouts = {}
        for header in ("abc", "nan", "inf", "-inf", "-5", "0", "1e999", ""):
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": header}
            async with http.get(f"{base}/metrics", headers=headers) as response:
                timeouts[header] = response.status
        async with http.get(f"{base}/metrics") as response:
            still = response.status
            series = parse(await response.text())
        async with http.get(f"{base}/healthz") as response:
            healthy = response.status
    print(f"\n[figures] malformed HTTP: {statuses}", file=sys.stderr)
    wrong = {k: v for k, v in statuses.items() if not 400 <= v < 500}
    assert not wrong, wrong
    for path in ("/nope", "/metrics/", "/metricsx", "//metrics", "/-/reload"):
        assert statuses[f"GET {path}"] == 404, path
    for key, status in statuses.items():
        if key.split()[0] in ("PUT", "DELETE", "PATCH", "POST") and key != "bad Content-Length":
            assert status == 405, key
    for label in targets:
        assert statuses[f"target={label}"] == 400, label
    assert still == 200 and healthy == 200
    assert set(timeouts.values()) == {200}, timeouts
    assert value(series, "prefect_db_up", target="prod") == 1.0
