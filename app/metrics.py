"""Every Prometheus metric of runbookd, defined once.

Label values come only from fixed sets (sources, status codes, outcomes) or from runbook ids
and action names, which the operator controls. No label ever takes a value from an alert.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SOURCES = ("alertmanager", "grafana", "pagerduty")

alerts_received = Counter(
    "runbookd_alerts_received", "Alerts received by webhook, by source and status.",
    ["source", "status"],
)
webhook_requests = Counter(
    "runbookd_webhook_requests", "Webhook requests answered, by source and HTTP status code.",
    ["source", "code"],
)
webhook_duration = Histogram(
    "runbookd_webhook_duration_seconds", "Time to store and answer a webhook request.",
    ["source"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ingest_batch_size = Histogram(
    "runbookd_ingest_batch_size", "Webhook deliveries stored per transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ingest_batches = Counter(
    "runbookd_ingest_batches", "Webhook batches stored, by path: `lane` when every alert was "
    "already stored or is new and handled by no runbook, `full` otherwise.", ["path"],
)

config_last_reload_successful = Gauge(
    "runbookd_config_last_reload_successful", "Whether the last catalog reload succeeded.",
)
config_last_reload_success_timestamp = Gauge(
    "runbookd_config_last_reload_success_timestamp_seconds",
    "Time of the last successful catalog reload.",
)

executions_total = Counter(
    "runbookd_executions", "Executions that ended, by runbook and outcome.",
    ["runbook", "outcome"],
)
executions_active = Gauge("runbookd_executions_active", "Executions not yet ended.")
step_duration = Histogram(
    "runbookd_step_duration_seconds", "Duration of step runs, by action.", ["action"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900),
)
approval_wait = Histogram(
    "runbookd_approval_wait_seconds", "Time a risky step waited for its approvals.",
    buckets=(1, 10, 30, 60, 300, 900, 1800, 3600, 7200),
)
time_to_restore = Histogram(
    "runbookd_time_to_restore_seconds", "From the alert firing to the execution succeeding.",
    ["runbook"], buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400),
)
runbook_paused = Gauge(
    "runbookd_runbook_paused", "1 when a runbook is paused by hand or by its circuit breaker.",
    ["runbook"],
)
runbook_review_overdue = Gauge(
    "runbookd_runbook_review_overdue", "1 when a runbook's review is overdue: its latest "
    "sign-off (else its YAML reviewed_at) plus review_every has passed. Read at scrape time.",
    ["runbook"],
)
runbook_last_review_timestamp = Gauge(
    "runbookd_runbook_last_review_timestamp_seconds", "When a runbook was last reviewed: its "
    "latest sign-off by a reviewer, else its YAML reviewed_at. Read at scrape time.",
    ["runbook"],
)
runbook_last_drill_timestamp = Gauge(
    "runbookd_runbook_last_drill_timestamp_seconds",
    "When the runbook's last drill finished (read from the database by the drill scheduler).",
    ["runbook"],
)
runbook_drill_problems = Gauge(
    "runbookd_runbook_drill_problems",
    "Problems (rot) the runbook's last drill found: steps that could not read or plan.",
    ["runbook"],
)
notifications_pending = Gauge(
    "runbookd_notifications_pending", "Notifications in the outbox not yet delivered.",
)
notifications_failed = Counter(
    "runbookd_notifications_failed", "Notifications that could not be delivered.",
)

identities_file_valid = Gauge(
    "runbookd_identities_file_valid",
    "1 when the tokens file last read was used; 0 while a changed file is refused (empty, "
    "unparsable, or one token digest for two identities) and the previous identities stay.",
)
identities_reload_errors = Counter(
    "runbookd_identities_reload_errors",
    "Versions of the tokens file refused; the identities loaded before stayed in use.",
)


def identities_file_checked(valid: bool) -> None:
    """Report one read of the tokens file (the IdentityStore's `on_reload` hook)."""
    identities_file_valid.set(1 if valid else 0)
    if not valid:
        identities_reload_errors.inc()
