"""``tens-sim`` as a user runs it: a subprocess on a pty or TCP, in bounded real time."""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from drivers.base import ChannelSettings
from drivers.tsp.codec import (
    PROTOCOL_MAJOR,
    Ack,
    Configure,
    Hello,
    SetAmplitude,
    Start,
    decode_device_message,
    encode_command,
    parse_hello_ack,
)
from drivers.tsp.frame import FrameDecoder
from simulator.cli import load_record, main

TENS_SIM = [sys.executable, "-m", "simulator.cli"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def first_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("tens-sim printed nothing")
    return process.stdout.readline().strip()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TENS_SIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
    return process.returncode, err


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


def exchange(port: serial.SerialBase, *commands: object) -> list[object]:
    """Send each command, return the decoded replies in order."""
    decoder = FrameDecoder()
    replies: list[object] = []
    for seq, command in enumerate(commands, start=1):
        port.write(encode_command(seq, command))  # type: ignore[arg-type]
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            line = port.readline()
            frames = decoder.feed(line)
            messages = [decode_device_message(f) for f in frames if not isinstance(f, Exception)]
            answer = [
                m for m in messages if getattr(m, "seq", None) == seq and m.verb in ("ACK", "ERR")
            ]
            if answer:
                replies.append(answer[0])
                break
        else:
            raise AssertionError(f"no reply to {command!r}")
    return replies


@pytest.mark.parametrize("where", [["--pty"], ["--tcp", "127.0.0.1:0"]])
def test_tens_sim_answers_hello(where: list[str]) -> None:
    process = spawn(*where, "--seed", "12", "--profile", "generic-2ch")
    try:
        url = first_line(process)
        port = serial.serial_for_url(url, timeout=5.0)
        try:
            (reply,) = exchange(port, Hello(PROTOCOL_MAJOR))
        finally:
            port.close()
        assert isinstance(reply, Ack)
        info = parse_hello_ack(reply).info
        assert (info.model, info.serial_number, info.reported_simulator) == (
            "HOME-2",
            "SIM000012",
            True,
        )
    finally:
        code, err = finish(process)
    assert code == 0, err
    assert "Traceback" not in err


def test_record_file_shows_delivery_and_power_off_on_sigint(record: Path) -> None:
    process = spawn("--pty", "--record", str(record))
    try:
        port = serial.serial_for_url(first_line(process), timeout=5.0)
        try:
            replies = exchange(
                port,
                Hello(PROTOCOL_MAJOR),
                Configure(1, ChannelSettings(frequency_hz=50, pulse_width_us=150)),
                Start(),
                SetAmplitude(1, 1.0),
            )
            assert all(isinstance(r, Ack) for r in replies)
            delivered = load_record(record, 2)
            assert [d.ma for d in delivered.changes(1)] == [1.0]
        finally:
            port.close()
    finally:
        code, err = finish(process, signal.SIGINT)
    assert code == 0, err
    assert [d.ma for d in load_record(record, 2).changes(1)] == [1.0, 0.0]


def test_tcp_serves_one_host_at_a_time_and_a_disconnect_fault_drops_it() -> None:
    process = spawn("--tcp", "127.0.0.1:0", "--fault", "disconnect@2.5:30")
    try:
        url = first_line(process)
        host, port_text = url.removeprefix("socket://").split(":")
        first = socket.create_connection((host, int(port_text)), timeout=5.0)
        second = socket.create_connection((host, int(port_text)), timeout=5.0)
        try:
            first.sendall(encode_command(1, Hello(PROTOCOL_MAJOR)))
            assert first.recv(4096).startswith(b"1 ACK TSP/2.0")
            second.sendall(encode_command(1, Hello(PROTOCOL_MAJOR)))
            second.settimeout(0.5)
            with pytest.raises(TimeoutError):
                second.recv(4096)  # waits its turn
            first.settimeout(10.0)
            data = b""
            while chunk := first.recv(4096):  # ends when the device drops the connection
                data += chunk
        finally:
            first.close()
            second.close()
    finally:
        code, err = finish(process)
    assert code == 0, err
    assert "disconnect" in err


def test_help_documents_the_fault_plan(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--pty",
        "--tcp",
        "--fault",
        "--fault-rate",
        "--record",
        "leadoff@",
        "garble@",
        "disconnect@",
        "stuck@",
        "jump@",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pty", "--fault", "leadoff@x"], "time 'x' is not a number"),
        (["--pty", "--profile", "nope"], "no device profile named 'nope'"),
        (["--tcp", "127.0.0.1:1", "--fault-kinds", "zap"], "unknown fault kind 'zap'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert err.startswith("tens-sim: error:")


def test_a_busy_tcp_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["--tcp", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_the_address_must_be_host_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--tcp", "localhost"])
    assert caught.value.code == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
