"""The records the store keeps, as frozen pydantic models (``extra="forbid"``).

Two families:

* **Clinical records** (:class:`PainRating`, :class:`PegScore`, :class:`PgicRating`,
  :class:`DiaryEntry`, :class:`AdverseEvent`, :class:`Prescription`, :class:`Screening`,
  :class:`Enrolment`) and the
  :class:`SessionPlan` of a session. Each has a ``uid`` that identifies it in every database it
  is ever copied to.
* **Log records** (:data:`LogRecord`): the payloads of hash-chained events, a discriminated union
  on ``kind``. Writing a clinical record also writes a log record that carries a copy of it, so
  that ``verify`` can prove the table row was not edited, inserted or deleted afterwards.

All times are timezone-aware and stored as UTC (see :func:`canonical.iso_utc`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    TypeAdapter,
    model_validator,
)

from drivers.base import ChannelSettings, DeviceInfo
from drivers.safety.events import GOVERNOR_KINDS
from drivers.safety.events import Actor as Actor
from drivers.safety.events import AmplitudeChanged as AmplitudeChanged
from drivers.safety.events import CapsChanged as CapsChanged
from drivers.safety.events import Closed as Closed
from drivers.safety.events import CommsLost as CommsLost
from drivers.safety.events import Configured as Configured
from drivers.safety.events import Connected as Connected
from drivers.safety.events import DeviceRejected as DeviceRejected
from drivers.safety.events import DeviceReported as DeviceReported
from drivers.safety.events import EmergencyStop as EmergencyStop
from drivers.safety.events import LeadOff as LeadOff
from drivers.safety.events import LeadOn as LeadOn
from drivers.safety.events import NoLeadOffDetection as NoLeadOffDetection
from drivers.safety.events import NoReadback as NoReadback
from drivers.safety.events import OutputMismatch as OutputMismatch
from drivers.safety.events import Paused as Paused
from drivers.safety.events import Rejected as Rejected
from drivers.safety.events import Resumed as Resumed
from drivers.safety.events import Started as Started
from drivers.safety.events import StopConfirmed as StopConfirmed
from drivers.safety.events import Stopped as Stopped
from drivers.safety.events import TargetChanged as TargetChanged
from tens_control.pain import AdverseKind as AdverseKind
from tens_control.pain import BodyRegion as BodyRegion
from tens_control.pain import DiaryKind as DiaryKind
from tens_control.pain import PainContext as PainContext
from tens_control.pain import PainSite as PainSite
from tens_control.pain import RatingTime as RatingTime
from tens_control.pain import Severity as Severity
from tens_control.store.canonical import iso_utc, new_uid, parse_utc


def _to_utc(moment: datetime) -> datetime:
    return parse_utc(iso_utc(moment))


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
]
"""A timezone-aware moment, normalised to UTC (microsecond precision), JSON as ``...Z``."""

Nrs = Annotated[int, Field(ge=0, le=10, strict=True)]
"""A 0-10 numeric rating scale score (integer)."""

Uid = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Text = Annotated[str, Field(max_length=10_000)]
ShortText = Annotated[str, Field(max_length=200)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- vocabularies


class EndReason(StrEnum):
    """Why a session ended (DESIGN.md §6)."""

    COMPLETED = "completed"
    STOPPED_BY_USER = "stopped_by_user"
    EMERGENCY_STOP = "emergency_stop"
    LEAD_OFF = "lead_off"
    COMMS_LOST = "comms_lost"
    DEVICE_FAULT = "device_fault"
    OUTPUT_MISMATCH = "output_mismatch"
    LIMIT_REACHED = "limit_reached"
    HOST_CRASH = "host_crash"


# --------------------------------------------------------------------------- clinical records


class PainRating(_Frozen):
    """One NRS 0-10 rating. ``nrs=None`` means the patient skipped it (missing, never 0)."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    nrs: Nrs | None
    when: RatingTime
    pain: PainSite
    context: PainContext = PainContext.REST
    session: Uid | None = None
    note: Text = ""


class PegScore(_Frozen):
    """The 3-item PEG (pain average, interference with enjoyment of life, with general activity),
    each 0-10; an unanswered item is ``None``."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    pain: Nrs | None
    enjoyment: Nrs | None
    activity: Nrs | None

    @property
    def score(self) -> float | None:
        """Mean of the three items, or None unless all three were answered."""
        items = (self.pain, self.enjoyment, self.activity)
        if any(item is None for item in items):
            return None
        return sum(item for item in items if item is not None) / 3


class PgicRating(_Frozen):
    """A Patient Global Impression of Change, 1 (very much improved) to 7 (very much worse);
    ``value=None``: asked and skipped."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    value: Annotated[int, Field(ge=1, le=7, strict=True)] | None


class DiaryEntry(_Frozen):
    """A pain episode outside a session, or another treatment (medication, ketamine, ...)."""

    uid: Uid = Field(default_factory=new_uid)
    kind: DiaryKind
    start: UtcDatetime
    end: UtcDatetime | None = None
    nrs: Nrs | None = None
    pain: PainSite | None = None
    notes: Text = ""

    @model_validator(mode="after")
    def _ordered(self) -> DiaryEntry:
        if self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        return self


_PAIN_FIELDS = ("nrs", "pain", "regions")
_SLEEP_FIELDS = ("sleep_hours", "sleep_quality")
_MEDICATION_FIELDS = ("medication", "dose")
_FIELDS_OF: dict[DiaryKind, tuple[str, ...]] = {
    DiaryKind.PAIN_EPISODE: _PAIN_FIELDS,
    DiaryKind.SLEEP: _SLEEP_FIELDS,
    DiaryKind.MOOD: ("mood",),
    DiaryKind.MEDICATION_TAKEN: _MEDICATION_FIELDS,
    DiaryKind.MEDICATION_CHANGE: _MEDICATION_FIELDS,
}
_EMPTY: dict[str, object] = {
    "nrs": None,
    "pain": None,
    "regions": (),
    "sleep_hours": None,
    "sleep_quality": None,
    "mood": None,
    "medication": "",
    "dose": "",
}


class DiaryItem(_Frozen):
    """One version of a diary entry as the patient wrote it in the app (log records only:
    :class:`DiaryWritten`, :class:`DiaryRevised`). ``start`` is when it happened (a pain
    episode's start, the time a dose was taken, the morning after the night slept), and
    ``written_at`` when this version was written: both are kept, so a backdated entry says so.
    ``uid`` is the entry's: every version of one entry has the same.

    Fields belong to kinds: ``nrs`` (worst pain), ``pain`` and ``regions`` (the body map) to a
    pain episode; ``sleep_hours`` and ``sleep_quality`` (0 very poor - 10 very good) to sleep;
    ``mood`` (0 very low - 10 very good) to mood; ``medication`` and ``dose`` to a dose taken
    or a medication change."""

    uid: Uid = Field(default_factory=new_uid)
    kind: DiaryKind
    start: UtcDatetime
    end: UtcDatetime | None = None
    written_at: UtcDatetime
    nrs: Nrs | None = None
    pain: PainSite | None = None
    regions: tuple[BodyRegion, ...] = ()
    sleep_hours: Annotated[float, Field(ge=0, le=24, allow_inf_nan=False)] | None = None
    sleep_quality: Nrs | None = None
    mood: Nrs | None = None
    medication: ShortText = ""
    dose: ShortText = ""
    notes: Text = ""

    @model_validator(mode="after")
    def _fits_kind(self) -> DiaryItem:
        if self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        allowed = _FIELDS_OF.get(self.kind, ())
        stray = [f for f, empty in _EMPTY.items() if f not in allowed and getattr(self, f) != empty]
        if stray:
            raise ValueError(f"{', '.join(stray)} do not belong to a {self.kind.value} entry")
        if len(set(self.regions)) != len(self.regions):
            raise ValueError("regions must not repeat")
        if self.kind is DiaryKind.PAIN_EPISODE and self.pain is None:
            raise ValueError("a pain episode needs pain (phantom, residual_limb or other)")
        if self.kind is DiaryKind.SLEEP and self.sleep_hours is None and self.sleep_quality is None:
            raise ValueError("a sleep entry needs the hours slept or how well (or both)")
        if self.kind is DiaryKind.MOOD and self.mood is None:
            raise ValueError("a mood entry needs the mood (0-10)")
        if self.kind is DiaryKind.MEDICATION_TAKEN and not self.medication.strip():
            raise ValueError("a dose taken needs the medicine's name")
        if self.kind is DiaryKind.OTHER and not self.notes.strip():
            raise ValueError("a diary entry of kind 'other' needs notes saying what it was")
        return self

    @classmethod
    def of_entry(cls, entry: DiaryEntry, written_at: datetime) -> DiaryItem:
        """A diary entry of the ``diary_entries`` table (written before the app kept versions)
        as the first version of its entry."""
        return cls(
            uid=entry.uid,
            kind=entry.kind,
            start=entry.start,
            end=entry.end,
            written_at=written_at,
            nrs=entry.nrs if entry.kind is DiaryKind.PAIN_EPISODE else None,
            pain=entry.pain if entry.kind is DiaryKind.PAIN_EPISODE else None,
            notes=entry.notes,
        )


class AdverseEvent(_Frozen):
    """Skin redness, burn, headache or another adverse event."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    kind: AdverseKind
    severity: Severity
    session: Uid | None = None
    notes: Text = ""


class Prescription(_Frozen):
    """One version of a patient's prescription, kept as the clinician's TOML text."""

    uid: Uid = Field(default_factory=new_uid)
    version: Annotated[int, Field(ge=1)]
    toml: Annotated[str, Field(max_length=1_000_000)]
    author: Annotated[str, Field(min_length=1, max_length=200)]
    reason: Text = ""
    created_at: UtcDatetime


class ScreeningOverride(_Frozen):
    """A clinician's override of one "yes" answer: who, when, why, and the clinician's
    signature (``tens_control.trust.keys.Signature`` as JSON; None when unsigned)."""

    question: ShortText
    who: Annotated[str, Field(min_length=1, max_length=200)]
    at: UtcDatetime
    why: Annotated[str, Field(min_length=1, max_length=10_000)]
    signature: dict[str, JsonValue] | None = None


class Screening(_Frozen):
    """Contraindication screening answers (question key -> yes) and clinician overrides."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    answers: dict[ShortText, bool]
    overrides: tuple[ScreeningOverride, ...] = ()
    recorded_by: Annotated[str, Field(min_length=1, max_length=200)]
    notes: Text = ""


class Enrolment(_Frozen):
    """A clinic enrolment pinned on this computer (``tens-control enrol``): the enrolment file
    as received (``tens_control.trust.enrolment`` reads it), with the facts a review needs."""

    uid: Uid = Field(default_factory=new_uid)
    at: UtcDatetime
    """When it was pinned here."""
    clinic: ShortText
    patient: Annotated[str, Field(min_length=1, max_length=64)]
    """The patient's pseudonym at the clinic (what the clinic's signatures name)."""
    serial: Annotated[int, Field(ge=1)]
    text: Annotated[str, Field(max_length=1_000_000)]
    replaced: bool = False
    """True when pinned with ``enrol --replace``: it replaced an enrolment whose keys did not
    sign it (another clinic, or someone starting over)."""


class Odometer(_Frozen):
    """A device's own counters, as it reported them when the session started (DESIGN.md §12):
    how many sessions it had run and how many seconds it had stimulated, in its lifetime. A gap
    between two sessions' counters is sessions this log does not have."""

    sessions: Annotated[int, Field(ge=0)]
    stimulation_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ChannelPlan(_Frozen):
    """One channel of a session: what it delivers and where the electrodes are."""

    channel: Annotated[int, Field(ge=1, le=16)]
    settings: ChannelSettings
    site: ShortText
    area_cm2: Annotated[float, Field(gt=0, le=1000)] | None = None
    cap_ma: Annotated[float, Field(ge=0, le=200)] | None = None


class SessionPlan(_Frozen):
    """What a session is set up to do, fixed at its start."""

    program: Annotated[str, Field(min_length=1, max_length=200)]
    channels: tuple[ChannelPlan, ...] = ()
    caps: dict[str, JsonValue] = Field(default_factory=dict)
    """The caps in force (e.g. a dump of ``drivers.limits.EffectiveCaps``), free-form JSON."""
    planned_minutes: Annotated[float, Field(gt=0, le=24 * 60)]
    prescription_version: Annotated[int, Field(ge=1)] | None = None
    screening: Uid | None = None
    notes: Text = ""


# --------------------------------------------------------------------------- log records


class ChainStarted(_Frozen):
    """First record of every chain: binds the chain to its patient and origin database."""

    kind: Literal["chain_started"] = "chain_started"
    patient: Uid
    pseudonym: ShortText
    origin: Uid


class SessionStarted(_Frozen):
    kind: Literal["session_started"] = "session_started"
    session: Uid
    started_at: UtcDatetime
    plan: SessionPlan
    device: DeviceInfo | None
    simulator: bool
    odometer: Odometer | None = None
    """The device's odometer at the start (None: the device does not report one)."""


class SessionEnded(_Frozen):
    kind: Literal["session_ended"] = "session_ended"
    session: Uid
    ended_at: UtcDatetime
    reason: EndReason
    recovered: bool = False
    """True when closed at a later start because the host crashed (reason ``host_crash``)."""
    detail: Text = ""


class StateChanged(_Frozen):
    kind: Literal["state_changed"] = "state_changed"
    from_state: ShortText
    to_state: ShortText
    reason: Text = ""


class CommandSent(_Frozen):
    """A command sent to the device (and its outcome). Written before the governor's events
    were typed (now: :class:`Started`, :class:`Paused`, :class:`Stopped` ...); read from old
    logs."""

    kind: Literal["command"] = "command"
    command: ShortText
    channel: int | None = None
    args: dict[str, JsonValue] = Field(default_factory=dict)
    ok: bool = True
    error: Text = ""


class LegacyAmplitudeChanged(_Frozen):
    """An ``amplitude_changed`` record written before the governor's events were typed (no
    time): read from old logs, never written."""

    kind: Literal["amplitude_changed"] = "amplitude_changed"
    channel: int
    from_ma: float
    to_ma: float
    who: Actor
    why: Text = ""


class LegacyRejected(_Frozen):
    """A ``rejected`` record written before the governor's events were typed (no time)."""

    kind: Literal["rejected"] = "rejected"
    command: ShortText
    parameter: ShortText
    value: JsonValue = None
    limit: JsonValue = None
    source: ShortText = ""
    message: Text


class LegacyDeviceReported(_Frozen):
    """A ``device_event`` record written before the governor's events were typed (no time)."""

    kind: Literal["device_event"] = "device_event"
    event: ShortText
    channel: int | None = None
    detail: Text = ""


_LEGACY: dict[str, type[LegacyAmplitudeChanged | LegacyRejected | LegacyDeviceReported]] = {
    "amplitude_changed": LegacyAmplitudeChanged,
    "rejected": LegacyRejected,
    "device_event": LegacyDeviceReported,
}
"""Kinds whose records before the typed governor events had no time: read with these."""


class Fault(_Frozen):
    """A fault that stopped or paused output. Written before the governor's events were typed
    (now: :class:`LeadOff`, :class:`OutputMismatch`, :class:`CommsLost`); read from old logs."""

    kind: Literal["fault"] = "fault"
    fault: ShortText
    channel: int | None = None
    detail: Text = ""


class HabituationPrompt(_Frozen):
    kind: Literal["habituation_prompt"] = "habituation_prompt"
    response: ShortText = ""


class Note(_Frozen):
    """Anything else worth logging, with free-form data."""

    kind: Literal["note"] = "note"
    text: Text
    data: dict[str, JsonValue] = Field(default_factory=dict)


class TelemetrySealed(_Frozen):
    """Seals one telemetry segment of a session: how many rows, and the digest over them."""

    kind: Literal["telemetry_sealed"] = "telemetry_sealed"
    session: Uid
    segment: Annotated[int, Field(ge=1)]
    count: Annotated[int, Field(ge=0)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    t_first: float | None = None
    t_last: float | None = None
    recovered: bool = False


class PainRated(_Frozen):
    kind: Literal["pain_rated"] = "pain_rated"
    record: PainRating


class PegRecorded(_Frozen):
    kind: Literal["peg_recorded"] = "peg_recorded"
    record: PegScore


class PgicRecorded(_Frozen):
    kind: Literal["pgic_recorded"] = "pgic_recorded"
    record: PgicRating


class DiaryAdded(_Frozen):
    kind: Literal["diary_added"] = "diary_added"
    record: DiaryEntry


class DiaryWritten(_Frozen):
    """A new diary entry written in the app (its first version)."""

    kind: Literal["diary_written"] = "diary_written"
    record: DiaryItem


class DiaryRevised(_Frozen):
    """A new version of the diary entry ``record.uid``: it supersedes the one before. The
    earlier versions stay in the log (and in the clinician's history of the entry)."""

    kind: Literal["diary_revised"] = "diary_revised"
    record: DiaryItem
    reason: Text = ""


class DiaryRetracted(_Frozen):
    """The patient deleted the diary entry ``entry``: from now on it counts nowhere, but its
    versions stay in the log and the clinician sees it as deleted."""

    kind: Literal["diary_retracted"] = "diary_retracted"
    entry: Uid
    at: UtcDatetime
    """When it was deleted."""
    reason: Text = ""


class AdverseEventRecorded(_Frozen):
    kind: Literal["adverse_event"] = "adverse_event"
    record: AdverseEvent


class PrescriptionSaved(_Frozen):
    kind: Literal["prescription_saved"] = "prescription_saved"
    record: Prescription


class ScreeningSaved(_Frozen):
    kind: Literal["screening_saved"] = "screening_saved"
    record: Screening


class EnrolmentPinned(_Frozen):
    kind: Literal["enrolment_pinned"] = "enrolment_pinned"
    record: Enrolment


GovernorRecord = (
    Connected
    | NoLeadOffDetection
    | NoReadback
    | CapsChanged
    | Configured
    | Started
    | TargetChanged
    | AmplitudeChanged
    | Rejected
    | DeviceRejected
    | Paused
    | Resumed
    | LeadOff
    | LeadOn
    | OutputMismatch
    | CommsLost
    | DeviceReported
    | Stopped
    | StopConfirmed
    | EmergencyStop
    | Closed
)
"""The safety governor's events (``drivers.safety.events``), logged as they are."""

LogRecord = Annotated[
    ChainStarted
    | SessionStarted
    | SessionEnded
    | StateChanged
    | CommandSent
    | Fault
    | GovernorRecord
    | HabituationPrompt
    | Note
    | TelemetrySealed
    | PainRated
    | PegRecorded
    | PgicRecorded
    | DiaryAdded
    | DiaryWritten
    | DiaryRevised
    | DiaryRetracted
    | AdverseEventRecorded
    | PrescriptionSaved
    | ScreeningSaved
    | EnrolmentPinned,
    Field(discriminator="kind"),
]
"""Every kind of hash-chained event."""

LOG_RECORD: TypeAdapter[LogRecord] = TypeAdapter(LogRecord)

DiaryLogRecord = DiaryWritten | DiaryRevised | DiaryRetracted
"""The diary's versioned records (``tens_control.diary`` writes and reads them)."""

DIARY_LOG_KINDS: frozenset[str] = frozenset(
    {"diary_added", "diary_written", "diary_revised", "diary_retracted"}
)
"""Log kinds that make up the diary: ``diary_added`` (an entry of the ``diary_entries`` table,
first version), then the app's versioned records."""

CallerRecord = (
    StateChanged | CommandSent | Fault | GovernorRecord | HabituationPrompt | Note | DiaryLogRecord
)
"""The log records callers append with ``Store.append_event``; the others the store writes
itself (so that a table row and its log record can never disagree)."""

CALLER_KINDS: frozenset[str] = frozenset(
    {"state_changed", "command", "fault", "habituation_prompt", "note"}
    | GOVERNOR_KINDS
    | (DIARY_LOG_KINDS - {"diary_added"})
)

FAULT_KINDS: frozenset[str] = frozenset({"fault", "lead_off", "output_mismatch", "comms_lost"})
"""Log kinds of a fault that stopped or paused output (``fault``: logs written before the
governor's events were typed)."""
ZEROING_KINDS: frozenset[str] = frozenset({"stopped", "paused", "emergency_stop"})
"""Log kinds after which every output is 0 (S1, S10)."""

RECORD_KINDS: dict[str, str] = {
    "pain_rated": "pain_ratings",
    "peg_recorded": "peg_scores",
    "pgic_recorded": "pgic_ratings",
    "diary_added": "diary_entries",
    "adverse_event": "adverse_events",
    "prescription_saved": "prescriptions",
    "screening_saved": "screenings",
    "enrolment_pinned": "enrolments",
}
"""Log kinds that carry a copy of a clinical record -> the table holding the record."""


def payload_of(record: AnyLogRecord) -> dict[str, Any]:
    """The JSON payload stored for a log record (its fields without ``kind``)."""
    return record.model_dump(mode="json", exclude={"kind"})


AnyLogRecord = LogRecord | LegacyAmplitudeChanged | LegacyRejected | LegacyDeviceReported
"""A log record as read back: what is written now, or an older form of the same kind."""


def parse_log_record(kind: str, payload: dict[str, Any]) -> AnyLogRecord:
    """Rebuild a log record from its kind and stored payload (raises ``ValidationError``)."""
    legacy = _LEGACY.get(kind)
    if legacy is not None and "time" not in payload:
        return legacy.model_validate({**payload, "kind": kind})
    return LOG_RECORD.validate_python({**payload, "kind": kind})
