"""``tens-control run``: one whole session without the UI, for scripts and tests.

It does what the patient UI does, through the same :class:`~tens_control.session.SessionController`:
connect, check the preconditions, record the "before" rating, start at 0 mA, optionally ramp to a
target (through the safety governor), run until the planned time is up, record the "after"
rating. Once a second it prints one plain line::

    time=12.0 state=running left_s=1788.0 ch1_ma=4.0 ch1_target_ma=10.0 ch1_measured_ma=3.98 ...

Ctrl-C stops at once (logged as stopped by user). A lead-off stops the output at once and, as a
headless run cannot be resumed, ends the session as lead-off. Exit status: 0 when the session
completed, 1 when it ended for another reason (printed as one line), 2 for a usage error (nothing
written), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from drivers.clock import Clock, RealClock, VirtualClock
from tens_control.commands.storage import open_to_write
from tens_control.config import load_config
from tens_control.device import DEFAULT_DEVICE_URL, PROTOCOLS, OpenedDevice, open_device
from tens_control.errors import TensControlError
from tens_control.pain import nrs, parse_nrs
from tens_control.prescription import PrescriptionError, parse_prescription
from tens_control.programs import catalogue
from tens_control.session import (
    END_WORDS,
    EndedUpdate,
    HabituationDue,
    MessageUpdate,
    SessionController,
    SessionState,
    Snapshot,
    StateUpdate,
    Update,
)
from tens_control.store import (
    ENV_PATIENT,
    EndReason,
    PainSite,
    RatingTime,
    Store,
    StoreError,
    add_db_argument,
    add_patient_argument,
    resolve_db_path,
)
from tens_control.store.store import StoredEvent, virtual_wall_clock
from tens_control.store.telemetry import VIRTUAL_FLUSH_INTERVAL_S

EXIT_COMPLETED = 0
EXIT_ENDED = 1
EXIT_INTERRUPTED = 130
STOP_ACK_WAIT_S = 1.0

_print_lock = threading.Lock()


def _out(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run one whole session without the UI (scripts, tests)",
        description="Run one session without the UI: connect, check the prescription and "
        "daily limits, start at 0 mA, optionally ramp to --target-ma, run to the end, and log "
        "everything. Prints one status line a second. Ctrl-C stops at once. Exit status 0 "
        "when the session completed, 1 when it ended otherwise, 2 for a usage error.",
    )
    p.set_defaults(command="run")
    p.add_argument(
        "--device",
        metavar="URL",
        default=None,
        help="the device: a port (/dev/ttyUSB0, COM3), socket://HOST:PORT or sim://tsp "
        f"(default: the saved device, else the built-in simulator {DEFAULT_DEVICE_URL})",
    )
    p.add_argument("--protocol", choices=PROTOCOLS, help="protocol of --device")
    p.add_argument("--profile", metavar="ID", help="device profile id (see tens-control devices)")
    p.add_argument("--program", metavar="NAME", required=True, help="program to run")
    p.add_argument(
        "--minutes",
        metavar="N",
        default=None,
        help="session length in minutes, may be fractional (default: the prescribed length)",
    )
    p.add_argument("--pain-before", metavar="N", help="pain rating 0-10 before the session")
    p.add_argument("--pain-after", metavar="N", help="pain rating 0-10 after the session")
    p.add_argument(
        "--pain-site",
        choices=[s.value for s in PainSite],
        default=PainSite.PHANTOM.value,
        help="which pain the ratings are about (default: phantom)",
    )
    p.add_argument(
        "--target-ma",
        metavar="X",
        default=None,
        help="ramp to X mA after the start (through the safety governor's ramp and caps)",
    )
    p.add_argument(
        "--channel",
        metavar="C",
        type=int,
        default=None,
        help="with --target-ma: only this channel (default: every channel of the session)",
    )
    add_db_argument(p)
    add_patient_argument(p)
    # for tests and benchmarks
    p.add_argument("--virtual-time", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seconds", default=None, help=argparse.SUPPRESS)
    p.add_argument("--print-log", action="store_true", help=argparse.SUPPRESS)


# --------------------------------------------------------------------------- validation


def _number(text: str | None, what: str, *, positive: bool) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise TensControlError(f"{what} must be a number (got {text!r})") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive number" if positive else "a number of 0 or more"
        raise TensControlError(f"{what} must be {kind} (got {text!r})")
    return value


def _rating(text: str | None, what: str) -> tuple[bool, int | None]:
    """(given, value): a 0-10 rating, or "skip" (given, None)."""
    if text is None:
        return False, None
    try:
        value = parse_nrs(text)
    except TensControlError as error:
        raise TensControlError(f"{what}: {error}") from None
    return True, None if value is None else nrs(value)


def _known_program(name: str, db: str | None, patient: str | None) -> None:
    """Refuse a program name neither the catalogue nor the stored prescription knows, before
    anything is opened or written."""
    known = set(catalogue())
    if name in known:
        return
    path = resolve_db_path(db)
    if path.exists():
        try:
            with Store.open_to_read(path) as store:
                who = store.current_patient() if patient is None else store.patient(patient)
                stored = None if who is None else store.latest_prescription(who.pseudonym)
        except StoreError:
            stored = None
        if stored is not None:
            try:
                rx = parse_prescription(stored.toml)
            except PrescriptionError:
                rx = None
            if rx is not None:
                known |= {p.name for p in rx.custom_programs}
                if name in known:
                    return
    raise TensControlError(f"no program named {name!r}; known programs: {', '.join(sorted(known))}")


# --------------------------------------------------------------------------- output


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def status_line(snap: Snapshot, since: float = 0.0) -> str:
    """One plain key=value line: time (seconds since ``since``), state, time left and each
    active channel's output."""
    parts = [
        f"time={snap.time - since:.1f}",
        f"state={snap.state.value}",
        f"left_s={'-' if snap.remaining_s is None else f'{snap.remaining_s:.1f}'}",
    ]
    for ch in snap.channels:
        if not ch.active:
            continue
        n = ch.channel
        parts.append(f"ch{n}_ma={_fmt(ch.set_ma)}")
        parts.append(f"ch{n}_target_ma={_fmt(ch.target_ma)}")
        parts.append(f"ch{n}_measured_ma={_fmt(ch.measured_ma)}")
        parts.append(f"ch{n}_impedance_ohm={_fmt(ch.impedance_ohm)}")
        if ch.lead_off:
            parts.append(f"ch{n}_lead_off=yes")
    return " ".join(parts)


class _ReportedByRun(logging.Filter):
    """The session's record that its log could not be written: ``run`` reports it itself, in
    its one final line (the session ended as host crash, or could not start)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("the session log could not be written")


class _Printer:
    """Collects updates (any thread) and prints messages in order."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.end: EndedUpdate | None = None
        self._lines: deque[str] = deque()

    def __call__(self, update: Update) -> None:
        if isinstance(update, EndedUpdate):
            self.end = update
            self._lines.append(f"ended reason={update.reason.value} detail={update.detail!r}")
            self.ended.set()
        elif isinstance(update, StateUpdate):
            self._lines.append(f"state {update.previous.value} -> {update.state.value}")
        elif isinstance(update, MessageUpdate) and update.message.key != "ended":
            self._lines.append(f"message {update.message.key}: {update.message.text}")
        elif isinstance(update, HabituationDue):
            self._lines.append(
                f"habituation prompt {update.number}: {update.question} "
                "(not answered in a headless run)"
            )

    def flush(self) -> None:
        while self._lines:
            _out(self._lines.popleft())


def _print_logged(event: StoredEvent) -> None:
    _out(f"logged seq={event.seq} kind={event.kind} hash={event.hash}")


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    # 1. everything a user can get wrong, before anything is opened or written
    minutes = _number(args.minutes, "--minutes", positive=True)
    seconds = _number(args.seconds, "--seconds", positive=True)
    if seconds is not None:
        minutes = seconds / 60.0
    target = _number(args.target_ma, "--target-ma", positive=False)
    if args.channel is not None and target is None:
        raise TensControlError("--channel goes with --target-ma")
    if args.channel is not None and args.channel < 1:
        raise TensControlError(f"--channel must be 1 or more (got {args.channel})")
    before_given, before = _rating(args.pain_before, "--pain-before")
    after_given, after = _rating(args.pain_after, "--pain-after")
    config = load_config()
    patient = args.patient or os.environ.get(ENV_PATIENT) or config.patient
    _known_program(args.program, args.db, patient)
    url = args.device if args.device is not None else (config.device or DEFAULT_DEVICE_URL)
    protocol = args.protocol or (config.protocol if args.device is None else None)
    profile = args.profile or (config.profile if args.device is None else None)

    # 2. the device (a port that does not exist is refused here, before the database)
    clock: Clock = VirtualClock() if args.virtual_time else RealClock()
    try:
        opened = open_device(url, clock, protocol=protocol, profile=profile)
    except BaseException:
        clock.close()
        raise
    reported = _ReportedByRun()
    session_log = logging.getLogger("tens_control.session")
    session_log.addFilter(reported)
    try:
        return _run_session(
            args, clock, opened, patient, minutes, target, before_given, before, after_given, after
        )
    finally:
        session_log.removeFilter(reported)
        clock.close()


def _open_store(args: argparse.Namespace, clock: Clock) -> tuple[Store, Any]:
    if isinstance(clock, VirtualClock):
        wall = virtual_wall_clock(clock, datetime.now(UTC))
        store = open_to_write(
            args.db,
            clock=clock,
            wall=wall,
            recover=False,
            flush_interval_s=VIRTUAL_FLUSH_INTERVAL_S,
        )
        return store, wall
    return open_to_write(args.db, clock=clock, recover=False), None


def _run_session(
    args: argparse.Namespace,
    clock: Clock,
    opened: OpenedDevice,
    patient: str | None,
    minutes: float | None,
    target: float | None,
    before_given: bool,
    before: int | None,
    after_given: bool,
    after: int | None,
) -> int:
    try:
        store, wall = _open_store(args, clock)
    except BaseException:
        opened.driver.close()
        raise
    printer = _Printer()
    try:
        if patient is None:
            current = store.current_patient()
            patient = None if current is None else current.pseudonym
        controller = SessionController(
            store,
            clock,
            patient=patient,
            wall=wall,
            on_logged=_print_logged if args.print_log else None,
            # nobody can resume a headless run: a lead-off ends the session at once
            lead_off_timeout_s=0.0,
        )
    except BaseException:
        opened.driver.close()
        store.close()
        raise
    controller.add_listener(printer, channel_updates=False)
    site = PainSite(args.pain_site)
    since = clock.now()
    try:
        for recovered in controller.recovered_sessions:
            _out(f"recovered session={recovered} reason=host_crash")
        device = controller.connect(device=opened)
        _out(
            f"device url={device.url} model={device.model} serial={device.serial_number} "
            f"profile={device.profile_id} simulator={'yes' if device.is_simulator else 'no'}"
            + (f" flags={','.join(device.flags)}" if device.flags else "")
        )
        snap = controller.prepare(args.program, minutes)
        channels = _target_channels(snap, args.channel, target)
        if before_given:
            controller.record_pain(before, when=RatingTime.BEFORE, pain=site)
        printer.flush()
        try:
            controller.start()
            session = controller.snapshot().session_id
            _out(f"session id={session} program={args.program} planned_s={snap.planned_s}")
            if target is not None:
                for channel in channels:
                    result = controller.set_target(
                        channel, target, why="tens-control run --target-ma"
                    )
                    if not result.accepted:
                        controller.stop()
                        printer.flush()
                        _out(f"refused channel={channel}: {result.message}")
                        print(
                            f"tens-control: error: {result.message}; the session was stopped",
                            file=sys.stderr,
                        )
                        return EXIT_ENDED
            _wait_for_end(controller, clock, printer, since)
        except KeyboardInterrupt:
            controller.stop()
            printer.flush()
            _out("interrupted: stopped by user (Ctrl-C)")
            _rate_after(controller, after_given, after, site)
            print("tens-control: session ended: stopped by user (Ctrl-C)", file=sys.stderr)
            return EXIT_INTERRUPTED
        printer.flush()
        _rate_after(controller, after_given, after, site)
        final = controller.snapshot()
        _out(status_line(final, since))
        reason = final.end_reason
        if reason is EndReason.COMPLETED:
            _out(f"completed session={final.session_id}")
            return EXIT_COMPLETED
        words = END_WORDS.get(reason, "unknown") if reason is not None else "unknown"
        detail = f" ({final.end_detail})" if final.end_detail else ""
        print(f"tens-control: session ended: {words}{detail}", file=sys.stderr)
        return EXIT_ENDED
    finally:
        printer.flush()
        controller.remove_listener(printer)
        try:
            controller.close()
        finally:
            store.close()


def _target_channels(snap: Snapshot, channel: int | None, target: float | None) -> list[int]:
    active = [ch for ch in snap.channels if ch.active]
    if target is None:
        return []
    if channel is not None:
        chosen = [ch for ch in active if ch.channel == channel]
        if not chosen:
            numbers = ", ".join(str(ch.channel) for ch in active)
            raise TensControlError(
                f"--channel {channel} is not used by this session (channels: {numbers})"
            )
        active = chosen
    for ch in active:
        if target > ch.cap_ma + 1e-9:
            raise TensControlError(
                f"--target-ma {_fmt(target)} is above the limit of channel {ch.channel}: "
                f"{_fmt(ch.cap_ma)} mA ({ch.cap_source.value}); choose a lower target"
            )
    return [ch.channel for ch in active]


def _wait_for_end(
    controller: SessionController, clock: Clock, printer: _Printer, since: float
) -> None:
    """Print a status line every second of clock time until the session ends, then wait
    (briefly) for the device to acknowledge the final stop."""
    next_line = clock.now()
    while True:
        printer.flush()
        snap = controller.snapshot()
        if snap.state is SessionState.ENDED or printer.ended.is_set():
            break
        _out(status_line(snap, since))
        next_line += 1.0
        clock.wait_until(printer.ended.is_set, max(0.0, next_line - clock.now()))

    def stopped() -> bool:
        return all(ch.set_ma == 0 for ch in controller.snapshot().channels)

    clock.wait_until(stopped, STOP_ACK_WAIT_S)


def _rate_after(
    controller: SessionController, given: bool, value: int | None, site: PainSite
) -> None:
    if given:
        controller.record_pain(value, when=RatingTime.AFTER, pain=site)


__all__ = ["add_parser", "run", "status_line"]
