"""Alert data in the postmortem draft is escaped for Markdown: a label cannot add a link, an
image, a heading or raw HTML to the document people paste into their incident tracker."""

from __future__ import annotations

import datetime as dt

from app.history.postmortem import render
from app.history.schemas import AlertBrief, ExecutionDetail

NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
HOSTILE = "x](https://evil.example/steal) ![i](https://evil.example/i.png) <img src=x>\n# Owned `"


def _detail(template: str) -> ExecutionDetail:
    alert = AlertBrief(
        id=1, source="alertmanager", fingerprint="f" * 16, status="firing", alertname=HOSTILE,
        labels={"alertname": HOSTILE, "model": "fraud-v3"}, annotations={"summary": HOSTILE},
        starts_at=NOW, ends_at=None, generator_url=None, received_at=NOW, updated_at=NOW,
        match_note=None, role="started")
    return ExecutionDetail(
        id=7, runbook_id="drift", runbook_version="v" * 64, target="model:fraud-v3",
        status="succeeded", status_reason=None, params={"model": "fraud-v3"}, dry_run=False,
        trigger="alert", started_by=None, created_at=NOW, started_at=NOW, finished_at=NOW,
        alert_fired_at=NOW, alerts_resolved_at=NOW, cursor=None, alerts=[alert],
        runbook_content={"title": "Drift", "postmortem": template}, steps=[], approvals=[],
        timeline=[])


def test_alert_labels_cannot_add_links_images_headings_or_html():
    text = render(_detail("# Postmortem\n\nAlert: {{ alerts[0].labels.alertname }}\n"
                          "Summary: {{ alerts[0].annotations.summary }}\n"))
    assert "](https://evil" not in text
    assert "<img" not in text
    assert "\n# Owned" not in text
    assert text.startswith("# Postmortem\n")  # the runbook's own Markdown stays Markdown
    assert "evil.example" in text  # the text is kept, only neutralised


def test_the_facts_section_escapes_the_alertname_too():
    text = render(_detail(""))
    facts = text[text.index("### Alerts"):]
    assert "](https://evil" not in facts and "<img" not in facts and "\n# Owned" not in facts
