"""The host driver for TSP devices (docs/protocol.md): the one runtime
(:class:`~drivers.runtime.DeviceRuntime`) running a :class:`~drivers.tsp.engine.TspEngine`.

Everything about the link's life cycle (reading, writing, timers, comms loss, reconnecting,
stopping on every way out) is the runtime's; everything about the wire is the engine's. This
class only adds what TSP has beyond every protocol: ``STATUS`` and ``PING``.
"""

from __future__ import annotations

from drivers.base import CommsLostError, Pending
from drivers.engine import Engine, Ping
from drivers.runtime import DeviceRuntime
from drivers.tsp.codec import DeviceStatus
from drivers.tsp.engine import TspEngine


class TspDriver(DeviceRuntime):
    """A TENS unit speaking TSP over a serial port (or ``sim://tsp``, a pty, TCP)."""

    protocol_label = "TSP"

    def _new_engine(self) -> Engine:
        return TspEngine(self.url)

    @property
    def tsp(self) -> TspEngine:
        engine = self.engine
        assert isinstance(engine, TspEngine)
        return engine

    @property
    def watchdog_ms(self) -> int:
        """The device watchdog period from ``HELLO`` (1000 ms until identified)."""
        return self.tsp.watchdog_ms

    @property
    def keepalive_interval_s(self) -> float:
        """``PING`` after this much silence from the host: a third of the device watchdog."""
        return self.tsp.keepalive_s

    @property
    def pings_sent(self) -> int:
        return self.tsp.pings_sent

    @property
    def framing_errors(self) -> int:
        return self.tsp.framing_errors

    def request_ping(self) -> Pending:
        """A keep-alive ``PING`` now, answered like any command."""
        return self.submit(Ping(), "PING")

    def status(self) -> DeviceStatus:
        """``STATUS``: state, battery and every channel's amplitude (blocking)."""
        pending = self.request_status()
        self.wait(pending)
        if not isinstance(pending.value, DeviceStatus):
            raise CommsLostError("STATUS not answered")
        return pending.value

    def __enter__(self) -> TspDriver:
        return self
