"""The fan-out benchmark runs (tiny): a schedule firing reaches the fake provider once per
matching subscriber. Speed itself is measured by benchmarks/fanout.py, never here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fanout.py"


def test_the_fanout_benchmark_runs_short() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--short"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "emails at the fake == matches: True; duplicates: 0" in done.stdout
    assert "pending sends/s:" in done.stdout
