"""``tens-control devices`` finds a P24 by its USB id and confirms it by its device id; a P24
is opened with the ``p24`` profile chosen automatically."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.clock import VirtualClock
from drivers.transport import PortInfo
from simulator.sciencemode4 import device_id
from tens_control.cli import main
from tens_control.device import choose_device, open_device

P24_URL = "sim://sciencemode4?seed=5"


def _ports(monkeypatch: pytest.MonkeyPatch, *ports: PortInfo) -> None:
    monkeypatch.setattr("tens_control.commands.devices.list_ports", lambda: list(ports))


def test_devices_confirms_a_p24_by_its_device_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p24 = PortInfo(P24_URL, "STM32 Virtual ComPort", 0x0483, 0x5740, "3A0042", "STMicro")
    silent = PortInfo("sim://sciencemode4?faults=mute@0", "STM32 board", 0x0483, 0x5740, None, None)
    ftdi = PortInfo("/dev/ttyUSB9", "FT232R USB UART", 0x0403, 0x6001, "A1", "FTDI")
    plain = PortInfo("/dev/ttyS0", "", None, None, None, None)
    _ports(monkeypatch, p24, silent, ftdi, plain)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index(f"  {p24.describe()}")
    assert lines[at + 1] == (
        f"      P24 confirmed: device id {device_id(5)}, firmware 1.0.0, sciencemode4 4.0.0 "
        "(profile p24)"
    )
    at = lines.index(f"  {silent.describe()}")
    assert lines[at + 1].startswith("      not confirmed as a P24: no ScienceMode4 answer")
    at = lines.index(f"  {ftdi.describe()}")
    assert (
        lines[at + 1] == "      looks like: Hasomed RehaStim 2 (ScienceMode2) (profile rehastim2)"
    )
    assert "  sim://sciencemode4   P24 emulation in this process" in lines
    assert any(line.startswith("  p24 ") for line in lines)


def test_devices_without_probing_only_names_the_p24(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p24 = PortInfo("/dev/ttyACM7", "STM32 Virtual ComPort", 0x0483, 0x5740, None, None)
    _ports(monkeypatch, p24)
    assert main(["devices", "--no-probe"]) == 0
    out = capsys.readouterr().out
    assert "      looks like: Hasomed P24 (ScienceMode4) (profile p24)" in out


def test_a_p24_port_gets_the_p24_profile_and_protocol_automatically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "ttyACM0"
    path.touch()
    port = PortInfo(str(path), "STM32 Virtual ComPort", 0x0483, 0x5740, None, None)
    monkeypatch.setattr("tens_control.device.list_ports", lambda: [port])
    choice = choose_device(str(path))
    assert (choice.protocol, choice.profile_id) == ("sciencemode4", "p24")
    opened = open_device(P24_URL, VirtualClock())
    try:
        assert (opened.profile.id, opened.info.model) == ("p24", "P24")
        assert opened.info.serial_number == device_id(5)
    finally:
        opened.driver.close()
