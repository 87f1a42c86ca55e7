"""Render alerts/prefect-db-alerts.yml from its source and settings: ``python -m devtools.alert_rules``.

The source (alerts/prefect-db-alerts.src.yml) is the rule file with ``@@{name}`` where an installation's
own facts go: the scrape job selector and the runbook and dashboard base URLs. Rendering is a plain
substitution, so the comments of the source survive and a new rule group is just more source text.
``@@`` is the delimiter because ``$`` belongs to the annotations' Go templates. ``--check`` exits 1
when the committed rule file differs from the rendering (tests/test_alerts.py runs the same check).
"""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Final

import yaml

ALERTS_DIR: Final = Path(__file__).resolve().parents[1] / "alerts"
SOURCE: Final = ALERTS_DIR / "prefect-db-alerts.src.yml"
SETTINGS: Final = ALERTS_DIR / "settings.yml"
OUTPUT: Final = ALERTS_DIR / "prefect-db-alerts.yml"
SETTING_NAMES: Final = ("job_selector", "runbook_base", "dashboard_base")
HEADER: Final = (
    "# GENERATED from alerts/prefect-db-alerts.src.yml and alerts/settings.yml by\n"
    "# `python -m devtools.alert_rules`: edit those, not this file.\n"
)


class _RuleTemplate(string.Template):
    delimiter = "@@"


class AlertRulesError(ValueError):
    """The settings or the source cannot be rendered."""


def load_settings(text: str, source: str) -> dict[str, str]:
    """The settings mapping; every name of SETTING_NAMES, each a non-empty string, nothing else."""
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise AlertRulesError(f"{source}: expected a mapping of {', '.join(SETTING_NAMES)}")
    unknown = [key for key in document if key not in SETTING_NAMES]
    problems = [f"{source}: {key}: unknown setting, remove it" for key in unknown]
    for key in SETTING_NAMES:
        value = document.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{source}: {key}: missing or empty, set it to a string")
    if problems:
        raise AlertRulesError("\n".join(problems))
    return {key: str(document[key]).rstrip("/") for key in SETTING_NAMES}


def render(source_text: str, settings: dict[str, str], source: str = "source") -> str:
    """The rule file: the source with every ``@@{name}`` replaced; an unknown name is an error."""
    try:
        body = _RuleTemplate(source_text).substitute(settings)
    except KeyError as error:
        name = str(error.args[0])
        line = source_text[: source_text.find(f"@@{{{name}}}")].count("\n") + 1
        raise AlertRulesError(
            f"{source}:{line}: @@{{{name}}}: not a setting of {SETTINGS.name}"
            f" (known: {', '.join(SETTING_NAMES)})"
        ) from None
    except ValueError as error:
        raise AlertRulesError(f"{source}: {error}: write placeholders as @@{{name}}") from None
    return HEADER + body


def rendered() -> str:
    """What alerts/prefect-db-alerts.yml must hold."""
    settings = load_settings(SETTINGS.read_text(encoding="utf-8"), str(SETTINGS))
    return render(SOURCE.read_text(encoding="utf-8"), settings, str(SOURCE))


def main(argv: list[str]) -> int:
    text = rendered()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python -m devtools.alert_rules", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
