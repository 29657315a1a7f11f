"""The storage-growth benchmark builds its threads and reports every column (shape, not speed)."""

from __future__ import annotations

import sys
from pathlib import Path

# `bench` sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import growth


async def test_the_report_has_every_thread_column_fit_and_target() -> None:
    rows = await growth.measure((2, 4), rejections=2)
    assert [(r.kind, r.revisions, r.status) for r in rows] == [
        ("replans", 2, "completed"),
        ("replans", 4, "completed"),
        ("rejections", 2, "completed"),
    ]
    for row in rows:
        assert row.thread_bytes > row.latest_bytes > 0
        assert row.ms_per_revision > 0
        assert row.audit_s >= row.audit_own_s >= 0
        assert row.audit_records > 0
    # A run of n revisions: its start, each revision, its steps and its end are audited.
    assert rows[1].audit_records > rows[0].audit_records
    report = growth.markdown(rows)
    assert "| replans | 4 |" in report
    assert "| rejections | 2 |" in report
    [fit, per_revision, constant] = growth.summary(rows)
    assert fit.startswith("fit, revisions 2 to 4: thread bytes ~ R^")
    assert per_revision.startswith("thread bytes per revision at 4: ")
    assert constant.startswith("bytes per revision constant: ")
    assert set(growth.as_json(rows)) == {"rows", "summary"}
