"""The reliability campaign (bench/campaign.py) with the bounded budget CI runs.

Every fault kind x every protocol (TSP, RehaStim 2, P24) through the safety governor (one random
moment each), a few kinds through the whole session controller with its store, two SIGKILLs of
``tens-control run`` against ``tens-sim --pty`` (and one against the emulated P24), and random
bytes into every decoder and file format. The campaign checks each scenario on the simulator's
delivered record and the stored log; this test only reads its verdict. It asserts no timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.faults import FaultKind

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = [
    pytest.mark.campaign,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="ptys and signals are POSIX"),
]


@pytest.mark.timeout(300)
def test_quick_campaign_has_no_violation_and_loses_no_event(tmp_path: Path) -> None:
    out = tmp_path / "campaign.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "campaign.py"), "--quick", "--seed", "7", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    parts = {p["part"]: p for p in result["parts"]}
    for part in parts.values():
        assert part["violations"] == [], part["part"]
        assert part["events_lost"] == 0, part["part"]
    governor = parts["faults: governor + driver + simulator"]
    assert governor["scenarios"] == 3 * len(FaultKind)  # every kind, every protocol
    assert parts["faults: session controller + store"]["scenarios"] > 0
    assert parts["crashes: SIGKILL tens-control run (pty)"]["scenarios"] == 2
    assert parts["crashes: SIGKILL tens-control run (sciencemode4 pty)"]["scenarios"] == 1
    assert parts["bad input: decoders and the device"]["scenarios"] > 0
    assert parts["bad input: profiles, prescriptions, settings, bundles"]["scenarios"] > 0
    assert "violations" in done.stdout  # the table was printed
