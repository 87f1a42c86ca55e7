"""The config file is strict: every problem is reported at once, with its path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.paths import REPO_ROOT
from exporter.cli import build_config, parse_args
from exporter.config import DEFAULT_DSN, Thresholds, parse_config
from exporter.errors import ConfigError


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "exporter.yaml")
    return list(caught.value.problems)


def test_empty_file_means_the_default_target() -> None:
    config = parse_config("", "exporter.yaml")
    assert [t.dsn for t in config.targets] == [DEFAULT_DSN]
    assert config.targets[0].name == "prefect"
    assert config.thresholds == Thresholds()


def test_full_config_is_read() -> None:
    config = parse_config(
        """
listen: 127.0.0.1:9999
scrape_timeout: 4s
targets:
  - name: prod
    dsn: postgresql://prefect_exporter@db:5432/prefect
    pool_size: 1
    lock_timeout: 250ms
thresholds:
  pending_stale_seconds: 5m
collectors:
  exclude: [tables]
  enable: [worker_heartbeats]
log: {level: debug, format: json}
""",
        "exporter.yaml",
    )
    (target,) = config.targets
    assert (config.listen_host, config.listen_port, config.scrape_timeout) == ("127.0.0.1", 9999, 4.0)
    assert (target.name, target.pool_size, target.lock_timeout) == ("prod", 1, 0.25)
    assert config.thresholds.pending_stale_seconds == 300.0
    assert config.exclude == {"tables"}
    assert config.enable == {"worker_heartbeats"}
    assert (config.log_level, config.log_format) == ("debug", "json")


def test_every_problem_is_reported_with_line_and_path() -> None:
    problems = problems_of(
        """targets:
  - dsn: mysql://nope
    pool_sise: 2
    pool_size: 9
thresholds:
  pending_stale_seconds: soon
lisen: 1
"""
    )
    text = "\n".join(problems)
    assert "exporter.yaml:2: targets[0].dsn: expected a URL such as postgresql://" in text
    assert "exporter.yaml:3: targets[0].pool_sise: unknown key (did you mean 'pool_size'?)" in text
    assert "exporter.yaml:4: targets[0].pool_size: at most 4" in text
    assert "exporter.yaml:6: thresholds.pending_stale_seconds: expected a duration" in text
    assert "exporter.yaml:7: lisen: unknown key (did you mean 'listen'?)" in text
    assert len(problems) == 5


def test_yaml_syntax_error_names_the_line() -> None:
    (problem,) = problems_of("targets:\n  - dsn: [unclosed\n")
    assert problem.startswith("exporter.yaml:3: not valid YAML")


def test_duplicate_keys_and_duplicate_target_names_are_errors() -> None:
    assert any("duplicate key 'listen'" in p for p in problems_of("listen: a:1\nlisten: b:2\n"))
    problems = problems_of(
        "targets:\n  - {name: a, dsn: 'postgresql://x@h/db'}\n  - {name: a, dsn: 'postgresql://x@h/db2'}\n"
    )
    assert any("target name 'a' is used twice" in p for p in problems)


def test_missing_password_sources_are_reported() -> None:
    problems = problems_of(
        "targets:\n  - dsn: postgresql://x@h/db\n    password_env: SURELY_NOT_SET_PPE\n"
        "    password_file: /nonexistent/secret\n"
    )
    assert any("environment variable SURELY_NOT_SET_PPE is not set" in p for p in problems)
    assert any("no such file: /nonexistent/secret" in p for p in problems)


def test_command_line_dsn_and_config_file(tmp_path: Path) -> None:
    config = build_config(parse_args(["--dsn", "postgresql://u@h/prefect_prod"], env={}))
    assert config.targets[0].name == "prefect_prod"
    path = tmp_path / "c.yaml"
    path.write_text("targets: []\n")
    with pytest.raises(ConfigError, match="list at least one target"):
        build_config(parse_args(["--config", str(path)], env={}))
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        build_config(parse_args(["--config", str(tmp_path / "missing.yaml")], env={}))


def test_the_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = REPO_ROOT / "deploy" / "exporter.example.yaml"
    secret = tmp_path / "secret"
    secret.write_text("x")
    text = example.read_text().replace("/run/secrets/prefect_exporter_password", str(secret))
    config = parse_config(text, str(example))
    assert config.targets[0].name == "prod"
    assert config.thresholds == Thresholds()


def test_sampler_and_server_log_settings() -> None:
    config = parse_config(
        "sampler: {enabled: false, interval: 2s}\n"
        "targets:\n  - dsn: postgresql://x@h/db\n    server_log: /var/log/pg-*.csv\n"
        "    server_log_format: csvlog\n",
        "exporter.yaml",
    )
    assert (config.sampler_enabled, config.sampler_interval) == (False, 2.0)
    assert (config.targets[0].server_log, config.targets[0].server_log_format) == (
        "/var/log/pg-*.csv",
        "csvlog",
    )
    problems = problems_of(
        "sampler: {enabled: maybe}\ntargets:\n  - {dsn: 'postgresql://x@h/db', server_log_format: xml}\n"
    )
    assert any("sampler.enabled: expected true or false" in p for p in problems)
    assert any("targets[0].server_log_format: expected one of stderr, csvlog, jsonlog" in p for p in problems)
