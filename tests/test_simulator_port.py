"""The sim:// pyserial URL handler: the simulator behind the real serial API."""

from __future__ import annotations

import threading
import time

import pytest
import serial

import simulator  # noqa: F401 - registers sim://
from drivers.clock import RealClock, VirtualClock
from drivers.transport import ClockedPort, open_port
from drivers.tsp.codec import PROTOCOL_MAJOR, Hello, Ping, encode_command
from simulator.device import SimConfig, SimConfigError
from simulator.frontends import FrontEndSpec, front_end_names, front_end_spec, register_front_end
from simulator.protocol_sim import Serial as SimSerial

HELLO = encode_command(1, Hello(PROTOCOL_MAJOR))


def virtual_port(url: str = "sim://tsp?seed=1") -> tuple[SimSerial, VirtualClock]:
    clock = VirtualClock()
    port = serial.serial_for_url(url, do_not_open=True, timeout=0)
    assert isinstance(port, SimSerial)
    assert isinstance(port, ClockedPort)
    port.use_clock(clock)
    port.open()
    return port, clock


def test_serial_for_url_opens_the_simulator_and_exposes_the_device() -> None:
    port, clock = virtual_port()
    assert port.is_open
    assert port.device.profile.id == "tens-sim"
    assert port.device.firmware.seed == 1
    port.write(HELLO)
    assert port.in_waiting == 0  # nothing happens inside write()
    clock.advance(0.01)
    assert port.read(port.in_waiting).startswith(b"1 ACK TSP/2.0 model=TENS-SIM")


def test_the_data_callback_runs_from_the_clock_never_inside_write() -> None:
    port, clock = virtual_port()
    calls: list[tuple[float, bool]] = []
    in_write = [False]

    def on_data() -> None:
        calls.append((clock.now(), in_write[0]))

    port.set_data_callback(on_data)
    in_write[0] = True
    port.write(HELLO)
    in_write[0] = False
    assert calls == []
    clock.advance(0.01)
    assert len(calls) == 1
    assert calls[0][0] == pytest.approx(0.002)  # 1 ms each way by default
    assert calls[0][1] is False


def test_latency_and_watchdog_come_from_the_url() -> None:
    port, clock = virtual_port("sim://tsp?latency_ms=5&wdms=300")
    seen: list[float] = []
    port.set_data_callback(lambda: seen.append(clock.now()))
    port.write(HELLO)
    clock.advance(0.02)
    assert seen == [pytest.approx(0.010)]
    assert b"wdms=300" in port.read(port.in_waiting)
    assert port.device.firmware.watchdog_s == pytest.approx(0.3)


def test_input_buffer_calls_work() -> None:
    port, clock = virtual_port()
    port.write(HELLO)
    port.write(encode_command(2, Ping()))
    clock.advance(0.01)
    assert port.in_waiting > 0
    first = port.read(5)
    assert first == b"1 ACK"
    port.reset_input_buffer()
    assert port.in_waiting == 0
    port.reset_output_buffer()
    assert port.out_waiting == 0
    assert port.read(10) == b""  # virtual time: never waits


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim://tsp?sede=1", "unknown simulator option"),
        ("sim://tsp?seed=abc", "seed='abc' is not a number"),
        ("sim://tsp?latency_ms=-1", "latency_ms"),
        ("sim://tsp?profile=nope", "no device profile named 'nope'"),
        ("sim://zmodem", "no simulated protocol named 'zmodem'"),
    ],
)
def test_a_bad_url_fails_to_open_with_one_clear_message(url: str, message: str) -> None:
    port = serial.serial_for_url(url, do_not_open=True)
    assert isinstance(port, SimSerial)
    port.use_clock(VirtualClock())
    with pytest.raises(serial.SerialException, match=message):
        port.open()


def test_open_port_from_the_transport_layer_works_with_sim_urls() -> None:
    clock = VirtualClock()
    port = open_port("sim://tsp?seed=2", clock=clock)
    assert isinstance(port, SimSerial)
    assert port.device.clock is clock
    port.close()


def test_closing_keeps_the_device_running_and_reopening_finds_it_again() -> None:
    port, clock = virtual_port()
    device = port.device
    port.close()
    assert device.powered
    port.open()
    assert port.device is device
    port.write(HELLO)
    clock.advance(0.01)
    assert port.in_waiting > 0


def test_real_clock_read_blocks_until_data_or_timeout_and_cancel_read_wakes_it() -> None:
    # the device goes quiet 0.3 s after power-on (a TSP/2 device sends telemetry while a host
    # talks to it)
    port = serial.serial_for_url("sim://tsp?faults=mute@0.3", timeout=2.0)
    assert isinstance(port, SimSerial)
    try:
        port.write(HELLO)
        line = port.read_until(b"\n")
        assert line.startswith(b"1 ACK TSP/2.0")
        time.sleep(0.35)
        port.reset_input_buffer()
        port.timeout = 0.05
        started = time.monotonic()
        assert port.read(1) == b""
        assert time.monotonic() - started >= 0.04
        port.timeout = 30.0
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(port.read(1)))
        reader.start()
        time.sleep(0.05)
        port.cancel_read()
        reader.join(timeout=5.0)
        assert not reader.is_alive()
        assert result == [b""]
    finally:
        port.close()


def test_a_port_with_its_own_real_clock_switches_the_device_off_on_close() -> None:
    port = serial.serial_for_url("sim://tsp", timeout=1.0)
    assert isinstance(port, SimSerial)
    device = port.device
    port.close()
    assert not device.powered


def test_a_shared_real_clock_runs_the_device_in_real_time() -> None:
    clock = RealClock()
    try:
        port = serial.serial_for_url("sim://tsp", do_not_open=True, timeout=1.0)
        assert isinstance(port, SimSerial)
        port.use_clock(clock)
        port.open()
        port.write(HELLO)
        assert port.read_until(b"\n").startswith(b"1 ACK")
        port.close()
    finally:
        clock.close()


# --------------------------------------------------------------------------- registry


class _EchoFrontEnd:
    """A toy protocol: echoes every chunk back."""

    def __init__(self, context: object) -> None:
        from simulator.frontends import FrontEndContext

        assert isinstance(context, FrontEndContext)
        self._send = context.send
        self.options = context.options

    def receive(self, data: bytes) -> None:
        self._send(data.upper())

    def close(self) -> None:
        pass


def test_a_new_front_end_registers_without_touching_the_simulator() -> None:
    register_front_end(
        FrontEndSpec(
            name="echotest",
            factory=_EchoFrontEnd,
            default_profile="generic-2ch",
            default_watchdog_ms=1000,
            options=frozenset({"shout"}),
        ),
        replace=True,
    )
    assert "echotest" in front_end_names()
    port, clock = virtual_port("sim://echotest?shout=yes&seed=4")
    assert port.device.profile.id == "generic-2ch"
    front_end = port.device.front_end
    assert isinstance(front_end, _EchoFrontEnd)
    assert front_end.options == {"shout": "yes"}
    port.write(b"hello")
    clock.advance(0.01)
    assert port.read(5) == b"HELLO"
    with pytest.raises(ValueError, match="already registered"):
        register_front_end(front_end_spec("echotest"))


def test_sciencemode2_is_registered_with_its_own_defaults() -> None:
    spec = front_end_spec("sciencemode2")
    assert (spec.default_profile, spec.default_watchdog_ms) == ("rehastim2", 1200)
    config = SimConfig.from_options("sciencemode2", {})
    assert config.resolve_profile().id == "rehastim2"
    with pytest.raises(SimConfigError, match="no simulated protocol"):
        SimConfig.from_options("nope", {})
