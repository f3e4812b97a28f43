"""``tens-sim``: the simulated TENS unit on a pty or a TCP port, in real time.

The device is the same :class:`~simulator.device.SimDevice` (firmware, protocol front-end, fault
plan) that ``sim://`` runs in-process; only the transport differs:

* ``tens-sim --pty`` opens a pseudo-terminal and prints its path on the first line of stdout;
  point the host at that path as if it were ``/dev/ttyUSB0``.
* ``tens-sim --tcp 127.0.0.1:7777`` listens for one host at a time; the host opens
  ``socket://127.0.0.1:7777``. The first line of stdout is that URL (useful with port 0).

``--record FILE`` appends every change of the delivered amplitude as a JSON line, flushed at
once, so that a test in another process can assert on what the device delivered.
SIGINT and SIGTERM switch the device off (every output 0) and exit cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pty
import select
import selectors
import signal
import socket
import sys
import termios
import threading
import tty
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

from drivers.clock import RealClock
from simulator.device import SimConfig, SimConfigError, SimDevice
from simulator.faults import FAULT_HELP, FaultPlan, FaultPlanError, parse_kinds
from simulator.firmware import DeliveredRecord, Delivery
from simulator.frontends import front_end_names

log = logging.getLogger("tens-sim")

POLL_S = 0.2
"""How often I/O threads look up from a blocking call to check whether to exit."""
IDLE_POLL_S = 0.05
"""How often the pty server looks for a host while none has the pty open (the first bytes of
a host that just opened it wait at most this long)."""


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- transports


class PtyServer:
    """The device on a pseudo-terminal. ``path`` is the end a host opens.

    It behaves like the USB-serial adapter of a real unit: bytes the device sends while no host
    has the port open are lost, and every host that opens it finds the line as at power-on
    (raw, 38400 baud). The second point matters because a pty cannot keep parity: the kernel
    clears PARENB, so a host's 460800 baud 8E1 request (ScienceMode2) only changes the baud rate.
    Were the line left at the previous host's 460800 baud -- a host killed with SIGKILL, or
    one that closed normally -- the next host's identical request would change nothing the pty
    keeps, and Linux refuses such a ``tcsetattr`` with EINVAL (POSIX lets it). So the server
    keeps only the master end open, sees a host leave as a hang-up on it, and then puts the
    line back.
    """

    def __init__(self, device: SimDevice, announce: Callable[[str], None]) -> None:
        self.device = device
        self._announce = announce
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master = -1
        self._line: list[Any] = []
        self.path = ""
        self._open_pty()
        self._thread = threading.Thread(target=self._read_loop, name="tens-sim-pty", daemon=True)
        device.attach(self._write)
        device.add_link_listener(self._on_link)

    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        try:
            tty.setraw(slave)
            line = termios.tcgetattr(slave)
            path = os.ttyname(slave)
        finally:
            os.close(slave)  # the path stays while the master is open
        os.set_blocking(master, False)
        with self._lock:
            self._master, self._line, self.path = master, line, path
        self._announce(path)

    def _close_pty(self) -> None:
        with self._lock:
            fd = self._master
            self._master = -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def start(self) -> None:
        self._thread.start()

    @staticmethod
    def _host_present(fd: int) -> bool:
        """Whether a host has the pty open (with none, the master end reads as hung up)."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not any(events & select.POLLHUP for _, events in poller.poll(0))

    def _write(self, data: bytes) -> None:
        """Device -> host (clock thread). With no host the bytes are lost, as on a cable that
        nobody listens to; a full pty buffer drops bytes, like a UART overrun."""
        with self._lock:
            fd = self._master
            if fd < 0 or not self._host_present(fd):
                return
            try:
                os.write(fd, data)
            except BlockingIOError:
                log.warning("pty buffer full (host not reading?): %d bytes dropped", len(data))
            except OSError as error:
                log.warning("pty write failed: %s", error)

    def _host_gone(self, fd: int) -> None:
        """No host has the pty open: put the line back as the next host must find it."""
        with self._lock:
            if fd != self._master or self._host_present(fd):
                return
            try:
                if termios.tcgetattr(fd) != self._line:
                    termios.tcsetattr(fd, termios.TCSANOW, self._line)
                    log.info("host left %s; line back to its power-on settings", self.path)
            except (termios.error, OSError) as error:
                log.warning("could not reset the line settings of %s: %s", self.path, error)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd = self._master
            if fd < 0:
                self._stop.wait(POLL_S)
                continue
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                ready = selector.select(POLL_S)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                # EIO: no host has the pty open right now; look again soon
                self._host_gone(fd)
                self._stop.wait(IDLE_POLL_S)
                continue
            if data:
                self.device.host_write(data)

    def _on_link(self, gone: bool) -> None:
        if gone:
            log.warning("disconnect: the pty %s vanishes", self.path)
            self._close_pty()
        else:
            self._open_pty()
            log.warning("reconnect: the device is back on a new pty %s", self.path)

    def close(self) -> None:
        self._stop.set()
        self.device.attach(None)
        self.device.remove_link_listener(self._on_link)
        self._thread.join(timeout=2.0)
        self._close_pty()


class TcpServer:
    """The device on a TCP port: one host at a time (a pyserial ``socket://`` target)."""

    def __init__(self, device: SimDevice, host: str, port: int) -> None:
        self.device = device
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: socket.socket | None = None
        try:
            self._server = socket.create_server((host, port), reuse_port=False)
        except OSError as error:
            raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        self._server.settimeout(POLL_S)
        self.address = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="tens-sim-tcp", daemon=True)
        device.attach(self._write)
        device.add_link_listener(self._on_link)

    @property
    def url(self) -> str:
        return f"socket://{self.address[0]}:{self.address[1]}"

    def start(self) -> None:
        self._thread.start()

    def _write(self, data: bytes) -> None:
        with self._lock:
            client = self._client
        if client is None:
            return
        try:
            client.sendall(data)
        except OSError as error:
            log.info("host connection lost while sending: %s", error)
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            client.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.device.disconnected:
                log.info("refusing %s: the device is unplugged", peer)
                client.close()
                continue
            log.info("host connected from %s", peer)
            client.settimeout(POLL_S)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._client = client
            self._read_client(client)
            log.info("host %s disconnected", peer)

    def _read_client(self, client: socket.socket) -> None:
        """Serve one host until it leaves; other hosts wait in the listen backlog."""
        while not self._stop.is_set():
            with self._lock:
                if self._client is not client:
                    return
            try:
                data = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            self.device.host_write(data)
        self._drop(client)

    def _on_link(self, gone: bool) -> None:
        if gone:
            with self._lock:
                client = self._client
            log.warning("disconnect: dropping the host connection")
            if client is not None:
                self._drop(client)
        else:
            log.warning("reconnect: accepting a host again")

    def close(self) -> None:
        self._stop.set()
        self.device.attach(None)
        self.device.remove_link_listener(self._on_link)
        with self._lock:
            client = self._client
        if client is not None:
            self._drop(client)
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=2.0)


# --------------------------------------------------------------------------- record file


class RecordWriter:
    """Append each delivered-amplitude change to a file as one JSON line, flushed at once."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as error:
            raise CliError(f"cannot write the record file {path}: {error.strerror}") from None
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.write(delivery.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def load_record(path: Path | str, channels: int) -> DeliveredRecord:
    """Read a ``--record`` file back as a :class:`DeliveredRecord` (for tests)."""
    return DeliveredRecord.from_jsonl(Path(path).read_text(encoding="utf-8"), channels)


# --------------------------------------------------------------------------- command line


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7777)")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tens-sim",
        description=(
            "A simulated TENS unit in real time, on a pty or a TCP port. It delivers no current "
            "to anybody. The same device is available in-process as sim://tsp?... ."
        ),
        epilog=FAULT_HELP + "\n\nExamples:\n"
        "  tens-sim --pty --seed 3 --fault leadoff@20:1 --record delivered.jsonl\n"
        "  tens-sim --tcp 127.0.0.1:7777 --fault garble@5,drop@6:host --fault-rate 0.02",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--pty", action="store_true", help="serve on a new pseudo-terminal; print its path first"
    )
    where.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        type=_parse_address,
        help="serve one host at a time on TCP (socket://HOST:PORT); port 0 picks a free port",
    )
    parser.add_argument(
        "--protocol",
        default="tsp",
        choices=front_end_names(),
        help="protocol the device speaks (default: tsp)",
    )
    parser.add_argument(
        "--profile",
        help="device profile id (default: tens-sim for tsp, rehastim2 for sciencemode2, "
        "p24 for sciencemode4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random stream")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault plan, e.g. leadoff@12.5:1,garble@30 (repeatable; see below)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="PER_S",
        help="random faults per second, drawn from the seed (default 0: none)",
    )
    parser.add_argument(
        "--fault-kinds",
        metavar="K+K",
        help="kinds of random fault, e.g. garble+drop+leadoff (default: see below)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=1.0, help="one-way latency in ms (default 1)"
    )
    parser.add_argument(
        "--wdms", type=int, help="device watchdog period in ms (default: the protocol's)"
    )
    parser.add_argument(
        "--battery", type=float, default=100.0, help="battery charge at power-on, %% (default 100)"
    )
    parser.add_argument(
        "--odometer",
        type=Path,
        metavar="FILE",
        help="keep the device's odometer (sessions, output time) in FILE across restarts",
    )
    parser.add_argument(
        "--clinic-key",
        type=Path,
        metavar="FILE",
        help="put a clinic's public key (.pub) into the unit: it then enforces caps the "
        "clinic signs for it (TSP/2 section 16)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="append every delivered-amplitude change to FILE as JSON lines",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log detail on stderr (default: warning)",
    )
    return parser


def _config(args: argparse.Namespace) -> SimConfig:
    options: dict[str, str] = {
        "seed": str(args.seed),
        "latency_ms": str(args.latency_ms),
        "battery": str(args.battery),
    }
    if args.profile:
        options["profile"] = args.profile
    if args.wdms is not None:
        options["wdms"] = str(args.wdms)
    if args.odometer is not None:
        options["odometer"] = str(args.odometer)
    if args.clinic_key is not None:
        options["clinic_key"] = str(args.clinic_key)
    try:
        config = SimConfig.from_options(args.protocol, options)
        plan = FaultPlan.parse(args.fault)
        if args.fault_rate or args.fault_kinds:
            kinds = parse_kinds(args.fault_kinds) if args.fault_kinds else None
            plan = plan.with_random(args.fault_rate, kinds)
    except (SimConfigError, FaultPlanError) as error:
        raise CliError(str(error)) from None
    return replace(config, faults=plan)


def _announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        config.resolve_profile()  # a wrong profile fails here, before anything is opened
    except SimConfigError as error:
        raise CliError(str(error)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    clock = RealClock()
    recorder: RecordWriter | None = None
    server: PtyServer | TcpServer | None = None
    device: SimDevice | None = None
    try:
        if args.record is not None:
            recorder = RecordWriter(args.record)
        try:
            device = SimDevice(config, clock)
        except (SimConfigError, LookupError) as error:
            raise CliError(str(error)) from None
        if recorder is not None:
            device.record.add_listener(recorder)
        if args.pty:
            server = PtyServer(device, _announce)
        else:
            host, port = args.tcp
            server = TcpServer(device, host, port)
            _announce(server.url)
        server.start()
        log.info("simulating %s (%s), seed %d", device.profile.name, config.protocol, config.seed)
        while not stop.wait(0.5):
            pass
        log.info("stopping: every output to 0")
        return 0
    finally:
        if device is not None:
            # switch off on the clock's thread (nothing else touches the firmware there)
            off = threading.Event()
            unit = device

            def switch_off() -> None:
                unit.power_off()
                off.set()

            clock.call_soon(switch_off)
            if not off.wait(1.0):
                log.warning("the device's clock did not answer; switching off directly")
                device.power_off()
        if server is not None:
            server.close()
        if recorder is not None:
            recorder.close()
        clock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="tens-sim %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run(args)
    except CliError as error:
        sys.stderr.write(f"tens-sim: error: {error}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
