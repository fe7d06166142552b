"""docs/operations.md names only metrics, stages and log lines that the code really has."""

from __future__ import annotations

import re
from pathlib import Path

from clipjobs import Metrics, ProviderStatus, Stage

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()
CODE = "\n".join(
    p.read_text() for d in ("src", "adapters") for p in sorted((ROOT / d).rglob("*.py"))
)


def test_every_metric_in_the_doc_exists_and_every_metric_is_documented() -> None:
    """Metric names in the runbook are emitted somewhere, and every known metric is explained."""
    packages = {p.name for p in (ROOT / "adapters").iterdir()}  # named where caps live
    in_doc = set(re.findall(r"\bclipjobs_[a-z_]+", DOC)) - packages
    in_code = set(re.findall(r"\"(clipjobs_[a-z_]+)\"", CODE))
    assert in_doc, "the runbook lists metrics"
    assert in_doc <= in_code, in_doc - in_code
    known = set(Metrics._HELP) | {
        "clipjobs_worker_steps_total",
        "clipjobs_suno_rate_limited_total",
        "clipjobs_active_jobs",
    }
    assert known <= in_doc, known - in_doc


def test_every_stage_and_suno_status_is_explained() -> None:
    """Each stage string and each Suno status appears in the runbook."""
    for stage in Stage:
        assert stage.value in DOC, stage
    for status in ProviderStatus:
        assert status.value in DOC, status


def test_quoted_log_lines_come_from_the_code() -> None:
    """The log lines the runbook tells operators to grep for are ones the code writes."""
    phrases = [
        "workers started as",
        "freed %d leases left by its previous run",
        "claim failed",
        "lease lost while the step runs",
        "Suno rate limit hit: pausing Suno calls for",
        "credit pre-flight skipped",
        "still running after",
        "unhandled error on",
    ]
    for phrase in phrases:
        assert phrase in CODE, phrase
        assert phrase.replace("%d", "N") in DOC or phrase in DOC, phrase
