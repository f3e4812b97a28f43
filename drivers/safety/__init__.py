"""The safety governor (DESIGN.md §4): every command to a TENS unit passes through it.

* ``rules.py``: the rules S1-S9 and S16 as pure functions, small enough to audit in one sitting;
* ``states.py``: the governor's states as one transition table;
* ``events.py``: one typed model per event, stored as they are by the session layer;
* ``governor.py``: :class:`SafetyGovernor`, which applies the rules under the driver's lock.
"""

from drivers.safety.events import (
    Actor,
    AmplitudeChanged,
    CapsChanged,
    ChannelCap,
    Closed,
    CommsLost,
    Configured,
    Connected,
    DeviceRejected,
    DeviceReported,
    EmergencyStop,
    GovernorEvent,
    LeadOff,
    LeadOn,
    NoLeadOffDetection,
    NoReadback,
    OutputMismatch,
    Paused,
    Rejected,
    Resumed,
    SafetyEvent,
    SafetyEventKind,
    Started,
    StopConfirmed,
    Stopped,
    StopReason,
    TargetChanged,
)
from drivers.safety.governor import (
    ChannelStatus,
    GovernorStateError,
    SafetyGovernor,
    SafetyRejection,
)
from drivers.safety.rules import (
    COMMS_TIMEOUT_S,
    LEAD_OFF_IMPEDANCE_OHM,
    READBACK_ABSOLUTE_MA,
    READBACK_CONSECUTIVE,
    READBACK_RELATIVE,
)
from drivers.safety.states import GovernorState

__all__ = [
    "COMMS_TIMEOUT_S",
    "LEAD_OFF_IMPEDANCE_OHM",
    "READBACK_ABSOLUTE_MA",
    "READBACK_CONSECUTIVE",
    "READBACK_RELATIVE",
    "Actor",
    "AmplitudeChanged",
    "CapsChanged",
    "ChannelCap",
    "ChannelStatus",
    "Closed",
    "CommsLost",
    "Configured",
    "Connected",
    "DeviceRejected",
    "DeviceReported",
    "EmergencyStop",
    "GovernorEvent",
    "GovernorState",
    "GovernorStateError",
    "LeadOff",
    "LeadOn",
    "NoLeadOffDetection",
    "NoReadback",
    "OutputMismatch",
    "Paused",
    "Rejected",
    "Resumed",
    "SafetyEvent",
    "SafetyEventKind",
    "SafetyGovernor",
    "SafetyRejection",
    "Started",
    "StopConfirmed",
    "StopReason",
    "Stopped",
    "TargetChanged",
]
