"""benchmarks/e2e.py runs end to end in its smoke size and prints both systems' figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_e2e_benchmark_smoke_run_delivers_every_event_through_both_systems() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "e2e.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "emails/s delivered at the provider" in done.stdout
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    for system in ("relay", "serve"):
        assert summary[system]["events"] == 300
        assert summary[system]["emails_per_s"] > 0
        assert 0 < summary[system]["p50_ms"] <= summary[system]["p99_ms"]
