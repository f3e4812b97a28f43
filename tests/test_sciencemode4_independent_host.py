"""The P24 emulator checked against an independent host: the public ``science-mode-4`` package.

``tens-sim --protocol sciencemode4`` runs in its own process on a pty; the package drives it
with its own serial connection, device and mid-level classes, exactly as it would drive a real
P24 (identify, read the version, init, update two channels, keep alive, stop). The battery is
read through the package's own framing and acknowledgement matching with one small packet
class, because the package implements the P24's Get_Battery_Status only for the I24's dyscom
layer (the layout is the C library's ``Smpt_get_battery_status_ack``). Every assertion about
output is made on what the emulator delivered (its ``--record`` file), never on what the package
believes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import science_mode_4
from science_mode_4 import (
    ChannelPoint,
    DeviceP24,
    MidLevelChannelConfiguration,
    ResultAndError,
    SerialPortConnection,
)
from science_mode_4.protocol.commands import Commands
from science_mode_4.protocol.packet import Packet, PacketAck

from tests.sim_process import SimProcess, start_tens_sim

SEED = 7
KEEP_ALIVE_S = 3.0
"""Longer than the device's 2 s keep-alive timeout: stimulation must go on all the same."""
KEEP_ALIVE_EVERY_S = 0.5


class PacketGetBatteryStatus(Packet):  # type: ignore[misc]
    """Get_Battery_Status (54), which science-mode-4 implements only for the I24."""

    def __init__(self) -> None:
        super().__init__()
        self._command = 54


class PacketGetBatteryStatusAck(PacketAck):  # type: ignore[misc]
    """Get_Battery_Status_Ack (55): result, level %, voltage mV (big-endian u16)."""

    def __init__(self, data: bytes | None) -> None:
        super().__init__(data)
        self._command = 55
        self.result = self.level = self.voltage = -1
        if data is not None:
            self.result, self.level = data[0], data[1]
            self.voltage = int.from_bytes(data[2:4], "big")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    yield from start_tens_sim(
        tmp_path, "--protocol", "sciencemode4", "--pty", "--seed", str(SEED), channels=8
    )


@pytest.fixture(autouse=True)
def _quiet_package() -> None:
    logging.getLogger("science_mode_4").setLevel(logging.WARNING)


async def _session(url: str) -> dict[str, object]:
    connection = SerialPortConnection(url)
    connection.open()
    seen: dict[str, object] = {}
    try:
        device = DeviceP24(connection)
        await device.initialize()  # Get_Stim_Status, Get_Device_Id, Get_Extended_Version
        general = device.get_layer_general()
        seen["device_id"] = general.device_id
        seen["firmware"] = general.firmware_version
        seen["sciencemode"] = general.science_mode_version
        stim = await general.get_stim_status()
        seen["stim_status"] = int(stim.stim_status)
        battery = await general.send_packet_and_wait(PacketGetBatteryStatus())
        assert isinstance(battery, PacketGetBatteryStatusAck)
        seen["battery"] = (battery.result, battery.level, battery.voltage)

        mid = device.get_layer_mid_level()
        await mid.init(do_stop_on_all_errors=True)
        red = MidLevelChannelConfiguration(
            True, 3, 20, [ChannelPoint(200, 20), ChannelPoint(200, -20)]
        )
        blue = MidLevelChannelConfiguration(
            True, 0, 10, [ChannelPoint(300, 12.5), ChannelPoint(300, -12.5)]
        )
        await mid.update([red, blue])
        seen["running"] = int((await general.get_stim_status()).stim_status)
        answers = []
        started = time.monotonic()
        while time.monotonic() - started < KEEP_ALIVE_S:
            answers.append(await mid.get_current_data())
            await asyncio.sleep(KEEP_ALIVE_EVERY_S)
        seen["current_data"] = answers
        await mid.stop()
        seen["stopped"] = int((await general.get_stim_status()).stim_status)
    finally:
        connection.close()
    return seen


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_science_mode_4_drives_the_emulated_p24_and_gets_exactly_what_it_asked(
    sim: SimProcess,
) -> None:
    seen = asyncio.run(_session(sim.url))

    assert seen["device_id"] == f"SIM{SEED:07d}"
    assert seen["firmware"] == "1.0.0"
    assert seen["sciencemode"] == "4.0.0"
    assert seen["stim_status"] == 0  # uninitialised
    assert seen["battery"] == (0, 100, 4200)
    assert seen["running"] == 3  # mid level running
    assert seen["stopped"] == 0
    answers = seen["current_data"]
    assert isinstance(answers, list)
    assert len(answers) >= 5
    for answer in answers:
        assert answer.result_error is ResultAndError.NO_ERROR
        assert answer.is_stimulation_active_per_channel == [True, True] + [False] * 6
        assert set(answer.channel_error) == {ResultAndError.NO_ERROR}

    record = sim.delivered()
    # channel 1 (red) switched on with a 3-pulse ramp to 20 mA, channel 2 (blue) at 12.5 mA;
    # both held (no keep-alive stop in 3 s) until Ml_Stop zeroed them
    assert [d.ma for d in record.changes(1)] == [5.0, 10.0, 15.0, 20.0, 0.0]
    assert [d.ma for d in record.changes(2)] == [12.5, 0.0]
    for channel in range(3, 9):
        assert record.changes(channel) == []
    last = record.changes()[-2:]  # one Ml_Stop zeroed every channel, one after the other
    assert sorted((d.channel, d.ma) for d in last) == [(1, 0.0), (2, 0.0)]
    held = last[0].time - record.changes(2)[0].time
    assert held >= KEEP_ALIVE_S  # stimulation outlived the 2 s timeout: the keep-alive works


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_without_keep_alive_the_emulated_p24_stops_after_two_seconds(sim: SimProcess) -> None:
    async def run() -> tuple[int, object]:
        connection = SerialPortConnection(sim.url)
        connection.open()
        try:
            device = DeviceP24(connection)
            await device.initialize()
            general = device.get_layer_general()
            mid = device.get_layer_mid_level()
            await mid.init(do_stop_on_all_errors=True)
            pulse = [ChannelPoint(100, 8), ChannelPoint(100, -8)]
            await mid.update([MidLevelChannelConfiguration(True, 0, 20, pulse)])
            # no Ml_Get_Current_Data from now on: only Get_Stim_Status, until the device stops
            deadline = time.monotonic() + 15.0
            status = int((await general.get_stim_status()).stim_status)
            while status != 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                status = int((await general.get_stim_status()).stim_status)
            try:
                await mid.get_current_data()
            except science_mode_4.ProtocolError as error:
                return status, str(error)
            return status, None
        finally:
            connection.close()

    status, error = asyncio.run(run())
    assert status == 0  # the device left the mid level by itself
    assert isinstance(error, str)
    assert "NOT_INITIALIZED" in error
    changes = sim.delivered().changes(1)
    assert [d.ma for d in changes] == [8.0, 0.0]
    # never before its 2 s (on the device's own clock; Get_Stim_Status is no keep-alive)
    assert changes[1].time - changes[0].time >= 2.0 - 1e-3


def test_the_package_and_our_codec_write_the_same_bytes() -> None:
    """Golden frames: science-mode-4's encoder and ours agree byte for byte."""
    from science_mode_4 import (
        PacketGeneralGetDeviceId,
        PacketGeneralGetExtendedVersion,
        PacketMidLevelGetCurrentData,
        PacketMidLevelInit,
        PacketMidLevelStop,
        PacketMidLevelUpdate,
    )
    from science_mode_4.protocol.protocol import Protocol

    from drivers.sciencemode4 import codec

    def package(packet: Packet, number: int) -> bytes:
        packet.number = number
        return bytes(Protocol.packet_to_bytes(packet))

    init = PacketMidLevelInit()
    init.do_stop_on_all_errors = True
    update = PacketMidLevelUpdate()
    update.channel_configuration = [
        MidLevelChannelConfiguration(True, 3, 20, [ChannelPoint(200, 20), ChannelPoint(200, -20)]),
        None,
        MidLevelChannelConfiguration(
            True, 0, 1000, [ChannelPoint(4095, -150), ChannelPoint(10, 0.5)]
        ),
    ]
    ours = codec.MlUpdate(
        (
            codec.MlChannel(20, (codec.Point(200, 20), codec.Point(200, -20)), ramp=3),
            None,
            codec.MlChannel(1000, (codec.Point(4095, -150), codec.Point(10, 0.5))),
            *(None,) * 5,
        )
    )
    pairs: list[tuple[Packet, codec.Message]] = [
        (PacketMidLevelStop(), codec.MlStop()),
        (PacketGeneralGetExtendedVersion(), codec.GetExtendedVersion()),
        (PacketMidLevelGetCurrentData(), codec.MlGetCurrentData()),
        (PacketGeneralGetDeviceId(), codec.GetDeviceId()),
        (init, codec.MlInit(True)),
        (update, ours),
    ]
    for number in (0, 1, 2, 15, 60, 63):
        for theirs, mine in pairs:
            assert codec.encode(number, mine) == package(theirs, number), (mine, number)
    assert Commands.GET_DEVICE_ID == codec.Command.GET_DEVICE_ID
