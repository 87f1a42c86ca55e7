"""The rule file generator: settings in one place, substituted into the source, every problem named."""

from __future__ import annotations

import pytest

from devtools.alert_rules import SETTING_NAMES, AlertRulesError, load_settings, render

SETTINGS = {
    "job_selector": 'job="pdb"',
    "runbook_base": "https://r.example/rb.md",
    "dashboard_base": "https://g/d",
}


def test_render_substitutes_every_setting_and_keeps_go_templates() -> None:
    source = (
        "expr: up{@@{job_selector}} == 0\n"
        "description: on {{ $labels.target }} = {{ $value }}\n"
        "runbook_url: @@{runbook_base}#x\n"
        "dashboard_url: @@{dashboard_base}/uid\n"
    )
    text = render(source, SETTINGS)
    assert 'up{job="pdb"} == 0' in text
    assert "{{ $labels.target }} = {{ $value }}" in text
    assert "runbook_url: https://r.example/rb.md#x" in text and "dashboard_url: https://g/d/uid" in text
    assert text.startswith("# GENERATED")


def test_an_unknown_placeholder_names_its_line() -> None:
    with pytest.raises(AlertRulesError, match=r"src:2: @@\{grafana\}: not a setting"):
        render("a: 1\nb: @@{grafana}\n", SETTINGS, "src")


def test_settings_need_every_name_and_nothing_else() -> None:
    settings = load_settings("job_selector: a\nrunbook_base: b/\ndashboard_base: c\n", "s.yml")
    assert settings["runbook_base"] == "b"
    with pytest.raises(AlertRulesError) as error:
        load_settings("job_selector: a\nrunbook_base: ''\ncolour: red\n", "s.yml")
    message = str(error.value)
    assert "s.yml: colour: unknown setting" in message
    assert "s.yml: runbook_base: missing or empty" in message
    assert "s.yml: dashboard_base: missing or empty" in message
    assert set(SETTING_NAMES) == set(SETTINGS)
