"""Each benchmark script runs with a tiny budget (``--quick``) and prints its figures.

Benchmarks report figures and never fail on timing, so nothing here looks at a measured value:
only that each script runs, prints every figure it promises and writes them as JSON with the
fields ``bench/run_all.py`` collects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser_support import chromium_missing

BENCH = Path(__file__).resolve().parent.parent / "bench"

SCRIPTS: dict[str, tuple[str, ...]] = {
    "p1_estop.py": ("P1.sim", "P1.sim0", "P1.lost", "P1.pty", "P1.p24", "P1.p24pty", "P1.timer"),
    "p2_throughput.py": (
        "P2.pipelined",
        "P2.blocking",
        "P2.p24pipelined",
        "P2.p24blocking",
        "P2.echo",
    ),
    "p3_telemetry.py": ("P3.store", "P3.raw", "P3.many", "P3.ratio"),
    "p4_report.py": ("P4.all", "P4.one", "P4.html", "P4.pdf"),
    "p4_serve.py": ("P4.web.first", "P4.web.all", "P4.web.bare", "P4.web.ratio", "P4.web.sql"),
    "p5_session.py": (
        "P5.governor",
        "P5.controller",
        "P5.ctl_disk",
        "P5.ctl_250ms",
        "P5.gov_cpu",
        "P5.ctl_cpu",
    ),
    "p6_tui.py": ("P6.start", "P6.bare", "P6.ratio", "P6.rss", "P6.ready"),
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="the benchmarks use ptys"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_prints_its_figures(script: str, tmp_path: Path) -> None:
    if script == "p4_serve.py" and (missing := chromium_missing()) and not os.environ.get("CI"):
        pytest.skip(f"{missing} (never skipped in CI, which installs it)")
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    ids = [f["figure"] for f in result["figures"]]
    assert ids == list(SCRIPTS[script])
    for fig in result["figures"]:
        assert fig["figure"] in done.stdout
        assert fig["unit"]
        assert isinstance(fig["value"], float)
        assert fig["met"] in (True, False, None)
        if fig["comparison"] != "info":
            assert fig["target"] is not None
    assert result["machine"]["python"]
