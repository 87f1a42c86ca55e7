"""Every rule of the doctor, in the order their findings are listed within a severity."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.config import Thresholds
from exporter.doctor import machinery
from exporter.doctor.findings import Finding
from exporter.doctor.observations import Observations
from exporter.doctor.rules import (
    Context,
    DoctorThresholds,
    Rule,
    connections,
    deadlocks,
    exporter_state,
    late_runs,
    lock_trees,
    stranded_pending,
    tables,
    transactions,
    unpolled_queues,
    zombies,
)
from exporter.operations import Classifier
from exporter.status import TargetStatus

RULES: tuple[Rule, ...] = (
    lock_trees,
    deadlocks,
    stranded_pending,
    zombies,
    machinery.cancelling_stuck,
    late_runs,
    machinery.late_marking_stalled,
    machinery.foreman_stalled,
    unpolled_queues,
    machinery.leaked_slots,
    machinery.isolation,
    connections,
    transactions,
    tables,
    machinery.retention_behind,
    machinery.invalid_indexes,
    exporter_state,
)


def diagnose(
    obs: Observations,
    classifier: Classifier,
    thresholds: Thresholds,
    doctor: DoctorThresholds,
    status: TargetStatus | None = None,
    rules: Sequence[Rule] = RULES,
) -> list[Finding]:
    """Apply every rule to ``obs``."""
    ctx = Context(obs, classifier, thresholds, doctor, status)
    return [finding for rule in rules for finding in rule(ctx)]
