"""The command line: exporter-toolkit flags and their aliases, environment variables, collector flags,
and --check-config, which validates everything the exporter reads without touching a database."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import cli
from exporter.catalog import load_catalog
from exporter.cli import ENV_PREFIX, build_config, env_name, main, parse_args
from exporter.config import DEFAULT_QUERY_DIR, load_config, with_collector_flags

# A DSN nothing listens on: --check-config must pass without ever connecting to it.
NOWHERE = "postgresql://prefect_exporter@127.0.0.1:1/prefect"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_toolkit_flags_and_the_old_spellings_give_the_same_config() -> None:
    toolkit = ["--dsn", NOWHERE, "--web.listen-address", "127.0.0.1:9911", "--log.level", "debug"]
    old = ["--dsn", NOWHERE, "--listen", "127.0.0.1:9911", "--log-level", "debug"]
    toolkit_config = build_config(parse_args([*toolkit, "--log.format", "json"], env={}))
    old_config = build_config(parse_args([*old, "--log-format", "json"], env={}))
    assert toolkit_config == old_config
    assert (toolkit_config.listen_host, toolkit_config.listen_port) == ("127.0.0.1", 9911)
    assert (toolkit_config.log_level, toolkit_config.log_format) == ("debug", "json")


def test_log_level_warn_means_warning_and_a_bad_level_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--log.level", "warn"], env={}).log_level == "warning"
    assert parse_args(["--log.level", "WARNING"], env={}).log_level == "warning"
    with pytest.raises(SystemExit) as exited:
        parse_args(["--log.level", "loud"], env={})
    assert exited.value.code == 2
    assert "expected one of debug, info, warn, warning, error, got 'loud'" in capsys.readouterr().err


def test_every_flag_has_an_environment_variable_named_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli._parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    flags = [a for a in parser._actions if a.dest not in ("help", "version")]
    assert len(flags) >= 10
    for action in flags:
        assert f"[env {env_name(action.dest)}]" in text, action.option_strings
        assert env_name(action.dest).startswith(ENV_PREFIX)
    assert "--collector.NAME" in text and "PREFECT_DB_EXPORTER_COLLECTORS_ENABLE" in text


def test_the_environment_fills_unset_flags_and_the_command_line_wins(tmp_path: Path) -> None:
    env = {
        "PREFECT_DB_EXPORTER_DSN": NOWHERE,
        "PREFECT_DB_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:9912",
        "PREFECT_DB_EXPORTER_WEB_TELEMETRY_PATH": "/prefect-metrics",
        "PREFECT_DB_EXPORTER_LOG_LEVEL": "warn",
        "PREFECT_DB_EXPORTER_WEB_ENABLE_LIFECYCLE": "true",
        "PREFECT_DB_EXPORTER_CHECK_CONFIG": "false",
    }
    args = parse_args([], env=env)
    config = build_config(args)
    assert config.targets[0].dsn == NOWHERE and config.listen_port == 9912 and config.log_level == "warning"
    assert args.web_telemetry_path == "/prefect-metrics"
    assert args.web_enable_lifecycle is True and args.check_config is False
    assert build_config(parse_args(["--listen", "127.0.0.1:9913"], env=env)).listen_port == 9913
    # A config file on the command line wins over the DSN variable (instead of clashing with it).
    path = write(tmp_path / "exporter.yaml", "targets:\n  - dsn: postgresql://u@db/prefect_file\n")
    assert build_config(parse_args(["--config", str(path)], env=env)).targets[0].name == "prefect_file"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PREFECT_DB_EXPORTER_LOG_LEVEL", "loud", "PREFECT_DB_EXPORTER_LOG_LEVEL='loud': expected one of"),
        ("PREFECT_DB_EXPORTER_LOG_FORMAT", "xml", "PREFECT_DB_EXPORTER_LOG_FORMAT='xml': expected one of"),
        ("PREFECT_DB_EXPORTER_WEB_ENABLE_LIFECYCLE", "maybe", "expected true or false"),
        ("PREFECT_DB_EXPORTER_WEB_TELEMETRY_PATH", "metrics", "expected a path such as /metrics"),
    ],
)
def test_a_bad_environment_value_names_its_variable(
    variable: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([], env={variable: value})
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_config_and_dsn_from_the_environment_clash(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([], env={"PREFECT_DB_EXPORTER_DSN": NOWHERE, "PREFECT_DB_EXPORTER_CONFIG": "x.yaml"})
    assert "either a config file or a DSN" in capsys.readouterr().err


def test_collector_flags_turn_collectors_on_and_off_beside_include_and_exclude(tmp_path: Path) -> None:
    path = write(
        tmp_path / "exporter.yaml",
        f"targets:\n  - dsn: {NOWHERE}\ncollectors:\n  exclude: [locks, lock_waits]\n",
    )
    args = parse_args(["--config", str(path), "--collector.locks", "--no-collector.sessions"], env={})
    config = build_config(args)
    assert config.exclude == {"lock_waits", "sessions"} and config.include == frozenset()
    # With an include list, --collector.NAME adds to it; --no-collector.NAME of its only member
    # leaves nothing (exclude applies after include), never "everything".
    only = write(tmp_path / "only.yaml", f"targets:\n  - dsn: {NOWHERE}\ncollectors:\n  include: [locks]\n")
    added = with_collector_flags(load_config(only), frozenset({"sessions"}), frozenset())
    assert added.include == {"locks", "sessions"}
    emptied = with_collector_flags(load_config(only), frozenset(), frozenset({"locks"}))
    assert emptied.include == {"locks"} and emptied.exclude == {"locks"}
    # --collector.NAME turns an opt-in collector on, as collectors.enable does.
    opted = build_config(parse_args(["--dsn", NOWHERE, "--collector.worker_heartbeats"], env={}))
    assert opted.enable == {"worker_heartbeats"} and opted.include == frozenset()
    # From the environment, as comma-separated names; flags on the command line replace them.
    env = {"PREFECT_DB_EXPORTER_COLLECTORS_DISABLE": "sessions, locks"}
    assert build_config(parse_args(["--dsn", NOWHERE], env=env)).exclude == {"sessions", "locks"}
    flagged = build_config(parse_args(["--dsn", NOWHERE, "--no-collector.tables"], env=env))
    assert flagged.exclude == {"tables"}


def test_contradicting_or_malformed_collector_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--collector.locks", "--no-collector.locks"], env={})
    assert "both enabled and disabled: locks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--collectors.locks"], env={})
    assert "unrecognized argument: --collectors.locks" in capsys.readouterr().err


def test_check_config_passes_a_good_config_without_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", NOWHERE, "--check-config"]) == 0
    out = capsys.readouterr().out
    # The opt-in collectors (enabled: false) do not run by default.
    collectors = len([c for c in load_catalog([DEFAULT_QUERY_DIR]).collectors if c.enabled])
    assert f"configuration ok: command line, 1 targets, {collectors} collectors, no web config" in out


def test_check_config_reports_each_problem_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "exporter.yaml",
        f"targets:\n  - dsn: {NOWHERE}\n    pool_size: 9\nscrape_timeout: soon\n",
    )
    assert main(["--config", str(path), "--check-config"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: targets[0].pool_size: at most 4" in err
    assert f"{path}:4: scrape_timeout:" in err


def test_check_config_reports_a_broken_collector_and_an_unknown_collector_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "queries"
    extra.mkdir()
    write(extra / "broken.sql", "-- description: broken\n-- metrics:\n--   - name: x\nSELECT 1;\n")
    path = write(
        tmp_path / "exporter.yaml",
        f"targets:\n  - dsn: {NOWHERE}\ncollectors:\n  extra_query_dirs: [queries]\n",
    )
    assert main(["--config", str(path), "--check-config"]) == 1
    assert f"{extra / 'broken.sql'}:" in capsys.readouterr().err
    assert main(["--dsn", NOWHERE, "--collector.no_such_thing", "--check-config"]) == 1
    assert "'no_such_thing' is not a collector" in capsys.readouterr().err


def test_check_config_reads_the_web_config_and_its_certificate_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = write(
        tmp_path / "web.yml",
        f"tls_server_config:\n  cert_file: {tmp_path / 'missing.crt'}\n  key_file: {tmp_path / 'k.key'}\n",
    )
    assert main(["--dsn", NOWHERE, "--web.config.file", str(web), "--check-config"]) == 1
    assert str(web) in capsys.readouterr().err
    unknown = write(tmp_path / "bad.yml", "basic_auth_users:\n  alice: notahash\nextra: 1\n")
    assert main(["--dsn", NOWHERE, "--web.config.file", str(unknown), "--check-config"]) == 1
    assert f"{unknown}:" in capsys.readouterr().err


def test_a_subcommand_gets_the_rest_of_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setitem(cli.SUBCOMMANDS, "probe", lambda argv: seen.append(list(argv)) or 7)
    assert main(["probe", "--dsn", NOWHERE]) == 7
    assert seen == [["--dsn", NOWHERE]]


def test_parse_args_keeps_the_namespace_build_config_reads() -> None:
    args = parse_args(["--dsn", NOWHERE], env={})
    assert isinstance(args, argparse.Namespace)
    assert args.collectors_enable == frozenset() and args.collectors_disable == frozenset()


def test_the_command_line_and_the_doctor_start_without_the_web_stack() -> None:
    # Only serving needs aiohttp; importing it first made `doctor` a third slower (docs/doctor.md).
    code = (
        "import sys, exporter.cli, exporter.doctor.command; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' or m == 'exporter.web'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_names_the_doctor_and_the_opt_in_collectors() -> None:
    text = cli._parser().format_help()
    assert "prefect-db-exporter doctor" in text
    assert "worker_heartbeats (off unless named)" in " ".join(text.split())
