"""The example Alertmanager config: valid, routes by severity, and delivers and inhibits for real."""

from __future__ import annotations

import asyncio
import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.promstack import Alertmanager, Delivery, PromStackError, WebhookReceiver, find_binary

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "deploy" / "alertmanager.yml"
# How long an inhibited alert is given to show up anyway, after an alert grouped at the same
# moment was delivered: several group intervals of the test config.
QUIET_SECONDS = 3.0


@pytest.fixture(scope="module")
def amtool() -> str:
    """Path of amtool (fails with an install hint when missing)."""
    return find_binary(("amtool",), "prometheus-alertmanager")


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_config_is_valid(amtool: str) -> None:
    result = run([amtool, "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=PrefectPostgresDown", "target=prod"], "pager"),
        (["severity=warning", "alertname=PrefectFlowRunsStuckPending", "target=prod"], "ticket"),
        (["severity=info", "alertname=PrefectConcurrencyLimitSaturated", "target=prod"], "null"),
        (["alertname=SomethingWithoutSeverity"], "ticket"),
    ],
)
def test_routes_by_severity(amtool: str, labels: list[str], receiver: str) -> None:
    argv = [amtool, "config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}"]
    result = run([*argv, *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_groups_by_alertname_target_and_pool() -> None:
    route = yaml.safe_load(CONFIG.read_text())["route"]
    assert route["group_by"] == ["alertname", "target", "work_pool"]


def test_receiver_urls_are_placeholders() -> None:
    receivers = {r["name"]: r for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
    assert set(receivers) == {"pager", "ticket", "null"}
    assert "webhook_configs" not in receivers["null"]
    for name in ("pager", "ticket"):
        (hook,) = receivers[name]["webhook_configs"]
        assert hook["url"].startswith(f"http://{name}.example:"), hook["url"]


def local_config(hook: WebhookReceiver) -> dict[str, Any]:
    """The example config with its webhooks pointed at ``hook`` and short grouping delays."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(CONFIG.read_text()))
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = hook.url(f"/{receiver['name']}")
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        route.update({"group_wait": "500ms", "group_interval": "1s"})
    return config


def alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus posts it, from the exporter's scrape job."""
    return {
        "labels": {
            "alertname": alertname,
            "severity": severity,
            "job": "prefect-db",
            "instance": "exporter:9650",
            **labels,
        },
        "annotations": {"summary": f"{alertname} (test)"},
    }


def carries(delivery: Delivery, alertname: str, target: str) -> bool:
    """Whether ``delivery`` holds an alert with that name and target."""
    return any(
        a["labels"]["alertname"] == alertname and a["labels"].get("target") == target for a in delivery.alerts
    )


def delivered(hook: WebhookReceiver, path: str, alertname: str, target: str) -> bool:
    """Whether ``hook`` got an alert with that name and target on ``path``."""
    return any(d.path == path and carries(d, alertname, target) for d in hook.deliveries)


def firing(alertname: str, target: str) -> Callable[[Delivery], bool]:
    """A delivery predicate: ``alertname`` firing for ``target``."""
    return lambda d: d.payload.get("status") == "firing" and carries(d, alertname, target)


async def test_delivers_by_severity_and_inhibits() -> None:
    async with WebhookReceiver() as hook, Alertmanager(local_config(hook)) as am:
        # The sources go first and are delivered before their targets exist, so the inhibitor has
        # certainly seen them when the targets' groups flush.
        await am.post_alerts(
            [
                alert("PrefectPostgresDown", "critical", target="down-db"),
                alert("PrefectDbExporterDown", "warning", instance="dead-exporter:9650"),
            ]
        )
        page = await hook.wait_for(firing("PrefectPostgresDown", "down-db"))
        assert page.path == "/pager"
        assert page.receiver == "pager"

        await am.post_alerts(
            [
                # Caused by the database being down: inhibited.
                alert("PrefectFlowRunsStuckPending", "warning", target="down-db", work_pool="k8s"),
                alert("PrefectDbCollectorFailing", "warning", target="down-db", collector="workers"),
                # Same alert for a database that is up: a ticket.
                alert("PrefectFlowRunsStuckPending", "warning", target="up-db", work_pool="k8s"),
                # Critical twin silences the warning of the same alert and target.
                alert("PrefectPostgresTooManyConnections", "critical", target="up-db"),
                alert("PrefectPostgresTooManyConnections", "warning", target="up-db"),
                # From an exporter that cannot be scraped: inhibited by PrefectDbExporterDown.
                alert("PrefectDbCollectorFailing", "warning", target="other", instance="dead-exporter:9650"),
                # Info goes nowhere.
                alert("PrefectConcurrencyLimitSaturated", "info", target="up-db", name="tag:x"),
            ]
        )
        ticket = await hook.wait_for(firing("PrefectFlowRunsStuckPending", "up-db"))
        assert ticket.path == "/ticket"
        assert ticket.receiver == "ticket"
        critical = await hook.wait_for(firing("PrefectPostgresTooManyConnections", "up-db"))
        assert critical.path == "/pager"

        held = {
            (a["labels"]["alertname"], a["labels"].get("target"), a["labels"]["severity"]): a["status"]
            for a in await am.alerts()
        }
        for key in [
            ("PrefectFlowRunsStuckPending", "down-db", "warning"),
            ("PrefectDbCollectorFailing", "down-db", "warning"),
            ("PrefectPostgresTooManyConnections", "up-db", "warning"),
            ("PrefectDbCollectorFailing", "other", "warning"),
        ]:
            assert held[key]["state"] == "suppressed", (key, held[key])
            assert held[key]["inhibitedBy"], (key, held[key])
        assert held[("PrefectFlowRunsStuckPending", "up-db", "warning")]["state"] == "active"

        await asyncio.sleep(QUIET_SECONDS)
        assert not delivered(hook, "/ticket", "PrefectFlowRunsStuckPending", "down-db")
        assert not delivered(hook, "/ticket", "PrefectDbCollectorFailing", "down-db")
        assert not delivered(hook, "/ticket", "PrefectDbCollectorFailing", "other")
        assert not delivered(hook, "/ticket", "PrefectPostgresTooManyConnections", "up-db")
        assert not any(d.labels("severity") & {"info"} for d in hook.deliveries)


def test_missing_binary_names_the_installer() -> None:
    with pytest.raises(PromStackError, match=r"bash \.ci/run.*apt-get install prometheus-alertmanager"):
        find_binary(("no-such-alertmanager",), "prometheus-alertmanager")


async def test_bad_config_fails_with_the_server_error_and_leaves_nothing() -> None:
    am = Alertmanager({"route": {"receiver": "missing"}, "receivers": [{"name": "other"}]})
    with pytest.raises(PromStackError, match="missing"):
        await am.start()
    assert am.pid is None and am.directory is None and am.port == 0


async def test_stop_ends_the_process_and_removes_its_directory() -> None:
    async with WebhookReceiver() as hook, Alertmanager(local_config(hook)) as am:
        pid, directory = am.pid, am.directory
        assert pid is not None and directory is not None and directory.is_dir()
    assert not Path(f"/proc/{pid}").exists()
    assert not directory.exists()
