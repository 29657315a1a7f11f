"""`emit` calls are type-checked: mypy refuses an unknown event, a missing or extra field,
or a field of the wrong type, and accepts the events planexec sends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from planexec.events import _TYPES, EventName, emit

GOOD = """
from planexec.events import emit

emit(None, "step_started", step="s1", tool=None, revision=1)
emit(None, "run_finished", status="completed", reason=None, answer="42")
emit(None, "replan", revision=2, reason="r",
     diff={"added": ["s3"], "removed": [], "changed": [], "unchanged": ["s1"]})
"""

CACHE = Path(__file__).resolve().parent.parent / ".mypy_cache"

BAD = {
    "unknown event": 'emit(None, "step_exploded", step="s1")',
    "missing field": 'emit(None, "step_started", step="s1", tool=None)',
    "extra field": 'emit(None, "review_requested", revision=1, plan={})',
    "wrong type": 'emit(None, "step_finished", step="s1", status="ok", duration_s=1.0,'
    " attempts=1, error=None, tokens=3)",
}


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "calls.py"
    module.write_text(source)
    return subprocess.run(
        # The project's own cache (git-ignored): later runs check only the snippet.
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(CACHE), str(module)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_mypy_checks_every_emit_call(tmp_path: Path) -> None:
    good = _mypy(tmp_path, GOOD)
    assert good.returncode == 0, good.stdout
    source = "from planexec.events import emit\n" + "\n".join(BAD.values()) + "\n"
    bad = _mypy(tmp_path, source)
    assert bad.returncode == 1
    flagged = {int(line.split(":")[1]) for line in bad.stdout.splitlines() if ": error:" in line}
    assert flagged == set(range(2, 2 + len(BAD))), bad.stdout


def test_every_event_has_its_typed_overload() -> None:
    assert set(_TYPES) == set(EventName.__args__)  # type: ignore[attr-defined]
    seen: list[object] = []
    emit(seen.append, "review_requested", revision=3)
    assert seen == [{"planexec": 1, "event": "review_requested", "revision": 3}]
    with pytest.raises(ValueError, match="unknown planexec event"):
        emit(seen.append, "nope", x=1)  # type: ignore[call-overload]
