"""Opening ports from pyserial URLs, and finding candidate TENS units.

One code path serves a real device (``/dev/ttyUSB0``, ``COM3``), the in-process simulator
(``sim://tsp?...``), a simulator in another process (``socket://127.0.0.1:7777`` or its pty path)
and a frame trace (``spy://``). Ports are opened exclusively (POSIX) with finite read and write
timeouts. We never call ``flush()``: it is ``tcdrain`` and can hang.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import serial
import serial.tools.list_ports

from drivers.base import PortError
from drivers.clock import Clock

READ_TIMEOUT_S = 0.05
WRITE_TIMEOUT_S = 0.5

if sys.platform != "win32":
    import termios

    _LINE_ERRORS: tuple[type[Exception], ...] = (termios.error, OSError)
else:  # pragma: no cover - Windows
    _LINE_ERRORS = (OSError,)
"""What pyserial's ``open`` lets through when the port refuses its line settings: it wraps
``tcgetattr`` failures in ``SerialException`` but not those of ``tcsetattr``, ``tcflush`` or the
modem-line ioctls (``termios.error``, ``OSError``)."""

_CONFIGURE_FAILED = "Could not configure port: "
"""pyserial's wording when ``tcgetattr`` fails (not a terminal, or a vanished one)."""

_PARITY_NAMES = {
    serial.PARITY_NONE: "no parity",
    serial.PARITY_EVEN: "even parity",
    serial.PARITY_ODD: "odd parity",
    serial.PARITY_MARK: "mark parity",
    serial.PARITY_SPACE: "space parity",
}


@runtime_checkable
class ClockedPort(Protocol):
    """A port whose far end runs in this process on our clock (the in-process simulator).

    With a :class:`~drivers.clock.VirtualClock` nothing runs in the background: the far end
    calls the data callback (from a clock callback) whenever bytes become readable.
    """

    def use_clock(self, clock: Clock) -> None: ...

    def set_data_callback(self, callback: Callable[[], None] | None) -> None: ...


@dataclass(frozen=True)
class PortInfo:
    """A serial port seen by the operating system."""

    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None

    @property
    def usb_id(self) -> str:
        if self.vid is None:
            return "-"
        pid = f"{self.pid:04X}" if self.pid is not None else "????"
        return f"{self.vid:04X}:{pid}"

    def describe(self) -> str:
        parts = [self.device, self.description or "no description", self.usb_id]
        if self.serial_number:
            parts.append(f"serial {self.serial_number}")
        return "  ".join(parts)


def list_ports() -> list[PortInfo]:
    """Every serial port the OS reports, USB ports first."""
    found = [
        PortInfo(
            device=p.device,
            description=p.description if p.description != "n/a" else "",
            vid=p.vid,
            pid=p.pid,
            serial_number=p.serial_number,
            manufacturer=p.manufacturer,
        )
        for p in serial.tools.list_ports.comports()
    ]
    return sorted(found, key=lambda p: (p.vid is None, p.device))


def candidate_ports(usb_vids: set[int] | None = None) -> list[PortInfo]:
    """Ports that may be a TENS unit: USB serial bridges, or only the given vendor ids."""
    ports = [p for p in list_ports() if p.vid is not None]
    if usb_vids is not None:
        ports = [p for p in ports if p.vid in usb_vids]
    return ports


def _found_instead() -> str:
    ports = list_ports()
    if not ports:
        return "no serial ports were found; try 'sim://tsp' for the built-in simulator"
    return "ports found: " + "; ".join(p.device for p in ports)


def _is_local_device(url: str) -> bool:
    return "://" not in url


def open_port(
    url: str,
    *,
    clock: Clock,
    baudrate: int = 115200,
    parity: str = serial.PARITY_NONE,
    read_timeout: float = READ_TIMEOUT_S,
    write_timeout: float = WRITE_TIMEOUT_S,
) -> serial.Serial:
    """Open ``url`` exclusively with finite timeouts; one clear :class:`PortError` on failure."""
    if not url:
        raise PortError("no port given; " + _found_instead())
    if _is_local_device(url) and not os.path.exists(url) and os.name == "posix":
        raise PortError(f"port {url} does not exist; " + _found_instead())
    try:
        port = serial.serial_for_url(
            url,
            do_not_open=True,
            baudrate=baudrate,
            parity=parity,
            bytesize=serial.EIGHTBITS,
            stopbits=serial.STOPBITS_ONE,
            timeout=read_timeout,
            write_timeout=write_timeout,
        )
    except ValueError as error:
        raise PortError(f"port {url} is not a valid port or URL ({error})") from None
    except serial.SerialException as error:
        raise PortError(f"port {url} cannot be used ({error}); " + _found_instead()) from None
    if _is_local_device(url) and os.name == "posix" and hasattr(port, "exclusive"):
        port.exclusive = True
    if isinstance(port, ClockedPort):
        port.use_clock(clock)
    try:
        port.open()
    except serial.SerialException as error:
        text = str(error)
        if "lock" in text.lower() or "busy" in text.lower() or "Resource temporarily" in text:
            raise PortError(
                f"port {url} is busy: another program has it open; close it and try again"
            ) from None
        if "Permission denied" in text:
            raise PortError(
                f"port {url}: permission denied; on Linux add yourself to the 'dialout' group "
                "(sudo usermod -aG dialout $USER, then log in again)"
            ) from None
        if text.startswith(_CONFIGURE_FAILED):
            reason = text.removeprefix(_CONFIGURE_FAILED)
            quoted = re.fullmatch(r"\(\d+, '(.+)'\)", reason)
            raise _refused_settings(url, port, quoted[1] if quoted else reason) from None
        raise PortError(f"port {url} could not be opened ({text}); " + _found_instead()) from None
    except _LINE_ERRORS as error:
        # pyserial has closed the port again; nothing was sent
        raise _refused_settings(url, port, _reason(error)) from None
    return port


def _reason(error: Exception) -> str:
    """``strerror`` of an ``OSError`` or a ``termios.error`` (``(errno, text)`` args)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if len(error.args) == 2 and isinstance(error.args[1], str):
        return error.args[1]
    return str(error) or type(error).__name__


def _refused_settings(url: str, port: serial.SerialBase, reason: str) -> PortError:
    parity = _PARITY_NAMES.get(port.parity, f"parity {port.parity}")
    return PortError(
        f"port {url} refused the serial settings {port.baudrate} baud, 8 data bits, {parity}, "
        f"1 stop bit ({reason}), so it is not a serial port this device can use (a stale "
        "pseudo-terminal, or an adapter that was unplugged): check the port name and the "
        "cable, or restart tens-sim and use the path it prints"
    )
