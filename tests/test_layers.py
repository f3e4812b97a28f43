"""The hardware layers run without the application or the UI (the import-linter contract,
checked again at run time)."""

import subprocess
import sys


def test_drivers_and_simulator_import_without_textual_or_the_application() -> None:
    code = (
        "import sys, drivers.base, drivers.limits, drivers.clock, drivers.transport, "
        "drivers.runtime, drivers.engine, simulator\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tens_control')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
