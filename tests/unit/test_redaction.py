"""The one redaction function: no password of a DSN or connection string survives it, whatever its
characters, and every output that can carry a DSN goes through it (the log formatters, a target's DSN)."""

from __future__ import annotations

import json
import logging
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from exporter.config import TargetConfig
from exporter.database import describe
from exporter.logs import JsonFormatter, LogfmtFormatter
from exporter.redaction import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:s3cret@h:5/db?sslmode=require", "postgresql://u:***@h:5/db?sslmode=require"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgres://u:p%40ss%3A@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=se%26c&x=1",
            "postgresql://u@h/db?sslmode=require&password=***&x=1",
        ),
        ("host=h password=secret dbname=prefect", "host=h password=*** dbname=prefect"),
        ("host=h password='pa ss' dbname=prefect", "host=h password=*** dbname=prefect"),
        (r"host=h password='it\'s a secret' user=u", "host=h password=*** user=u"),
        ("PGPASSWORD=secret psql", "PGPASSWORD=*** psql"),
        ("sslpassword=secret host=h", "sslpassword=*** host=h"),
        ("connecting to postgresql://u@h:5432/db failed", "connecting to postgresql://u@h:5432/db failed"),
        ('password authentication failed for user "u"', 'password authentication failed for user "u"'),
    ],
)
def test_each_form_of_password_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


# Passwords of any printable characters; in a URL's user info written raw (as operators do) or
# percent-encoded (as they should); no whitespace raw in a URL, where it cannot be written at all.
PASSWORDS = st.text(alphabet=string.printable, min_size=6, max_size=40)
URL_SAFE_RAW = st.text(
    alphabet=string.digits + string.ascii_letters + string.punctuation, min_size=6, max_size=40
)
SPECIAL = ["p@ss:w/rd?&=%#", "%40%3A%2F", "a'b\\'c d", "@@@@::://", "pa ss&word=x"]


def forms(password: str) -> set[str]:
    """The ways a password may be written, any of which is a leak."""
    return {password, quote(password, safe=""), quote(password)}


def dsn_texts(password: str, raw_ok: bool) -> list[str]:
    encoded = quote(password, safe="")
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    texts = [
        f"postgresql://prefect:{encoded}@db.example:5432/prefect",
        f"postgresql://prefect@db.example/prefect?sslmode=require&password={encoded}&application_name=x",
        f"host=db.example port=5432 password='{escaped}' dbname=prefect",
    ]
    if raw_ok:
        texts.append(f"postgresql://prefect:{password}@db.example:5432/prefect")
    if not any(c in password for c in " \t\n\r\x0b\x0c'\\"):
        texts.append(f"host=db.example password={password} dbname=prefect")
    return texts


def leaked(output: str, password: str) -> bool:
    return any(form in output for form in forms(password))


def by_chance(password: str) -> bool:
    """True when ``password`` is in the outputs anyway (e.g. "logger"), whatever the DSN carries."""
    neutral = "".join(dict.fromkeys("\x00\x01\x02\x03\x04\x05"))
    return any(
        leaked(output, password)
        for text in dsn_texts(neutral, raw_ok=True)
        for output in [redact(text), *log_outputs(text)]
    )


def log_outputs(text: str) -> list[str]:
    """What the two log formatters write for a record carrying ``text`` everywhere a record can."""
    try:
        raise ValueError(f"cannot parse {text}")
    except ValueError as error:
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, "connect to %s", (text,), None)
        record.exc_info = (ValueError, error, None)
        record.fields = {"dsn": text, "error": describe(error)}  # type: ignore[attr-defined]
    logfmt, as_json = LogfmtFormatter().format(record), JsonFormatter().format(record)
    # JSON escapes quotes and backslashes: read the values back to look for the password as written.
    return [logfmt, as_json, *json.loads(as_json).values()]


@given(password=PASSWORDS)
@example(password=SPECIAL[0])
@example(password=SPECIAL[1])
@example(password=SPECIAL[2])
@example(password=SPECIAL[4])
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_no_printable_password_survives_redaction_or_the_log_formatters(password: str) -> None:
    assume(not by_chance(password))
    for text in dsn_texts(password, raw_ok=False):
        assert not leaked(redact(text), password), text
        for output in log_outputs(text):
            assert not leaked(output, password), (text, output)


@given(password=URL_SAFE_RAW)
@example(password="p@ss@word")
@example(password="a/b?c#d@e:f")
@example(password=SPECIAL[3])
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_raw_password_in_a_url_is_masked_up_to_the_last_at(password: str) -> None:
    assume(not by_chance(password))
    dsn = f"postgresql://prefect:{password}@db.example:5432/prefect"
    assert redact(dsn) == "postgresql://prefect:***@db.example:5432/prefect"
    assert not leaked(TargetConfig(name="t", dsn=dsn).safe_dsn, password)
    for output in log_outputs(dsn):
        assert not leaked(output, password), output
