"""A checker for the bundles :mod:`tens_control.review.fhir_export` writes: what parsing with
``fhir.resources`` does not check.

``fhir.resources`` validates the structure and the datatypes. It accepts ``"status": "bogus"``,
a value together with a ``dataAbsentReason``, and a reference to nothing. This checker runs on
every exported bundle (and so on every bundle the tests make) and reports:

- **references**: every ``reference`` resolves to an entry of the bundle, of a resource type
  the element allows; full URLs are unique and match the resource ids;
- **required bindings**: the codes of elements FHIR R4B binds ``required`` (statuses, intent,
  actuality, AdverseEvent severity, Device name type, Timing units, Bundle type, CodeSystem
  content) are in their value sets;
- **mandatory elements** (cardinality 1..1) of each resource type the export writes;
- **value or dataAbsentReason**: an Observation, and each component, has exactly one
  (invariant obs-6 forbids both; the export never leaves a figure without either); a
  component never repeats the Observation's code with a value (obs-7);
- **codings**: a system and a code; a code of one of our own CodeSystems is defined there; a
  SNOMED CT identifier passes its Verhoeff check digit; a LOINC code has its check-digit form;
- **UCUM quantities**: the unit code is one the export uses (``mA``, ``min``, ``h``,
  ``{score}``) and the system is UCUM; **periods** start before they end.

The official HL7 validator (Java, with the FHIR packages from packages.fhir.org) checks far
more, but neither Java nor those packages can be reached from here; see docs/review.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tens_control.errors import TensControlError
from tens_control.review.fhir_export import CODE_SYSTEMS, LOINC, SNOMED, UCUM

REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Bundle", "type"): frozenset(
        {
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        }
    ),
    ("Observation", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Procedure", "status"): frozenset(
        {
            "preparation",
            "in-progress",
            "not-done",
            "on-hold",
            "stopped",
            "completed",
            "entered-in-error",
            "unknown",
        }
    ),
    ("DeviceUseStatement", "status"): frozenset(
        {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold"}
    ),
    ("MedicationStatement", "status"): frozenset(
        {
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        }
    ),
    ("AdverseEvent", "actuality"): frozenset({"actual", "potential"}),
    ("DeviceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("DeviceRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("CodeSystem", "status"): frozenset({"draft", "active", "retired", "unknown"}),
    ("CodeSystem", "content"): frozenset(
        {"not-present", "example", "fragment", "complete", "supplement"}
    ),
    ("Device", "status"): frozenset({"active", "inactive", "entered-in-error", "unknown"}),
}
"""(resource type, element) -> the codes of its required value set (FHIR R4B)."""

DEVICE_NAME_TYPES = frozenset(
    {
        "udi-label-name",
        "user-friendly-name",
        "patient-reported-name",
        "manufacturer-name",
        "model-name",
        "other",
    }
)
TIME_UNITS = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})
AE_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
AE_SEVERITIES = frozenset({"mild", "moderate", "severe"})
UCUM_UNITS = frozenset({"mA", "min", "h", "{score}", "%", "1"})

MANDATORY: dict[str, tuple[tuple[str, ...], ...]] = {
    "Observation": (("status",), ("code",)),
    "Procedure": (("status",), ("subject",)),
    "DeviceUseStatement": (("status",), ("subject",), ("device",)),
    "AdverseEvent": (("actuality",), ("subject",)),
    "MedicationStatement": (
        ("status",),
        ("medicationCodeableConcept", "medicationReference"),
        ("subject",),
    ),
    "DeviceRequest": (("intent",), ("codeCodeableConcept", "codeReference"), ("subject",)),
    "CodeSystem": (("status",), ("content",)),
}
"""Resource type -> its 1..1 elements (a tuple of choices for a value[x]-style element)."""

REFERENCE_TARGETS: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "subject"): frozenset({"Patient"}),
    ("Observation", "partOf"): frozenset(
        {
            "MedicationAdministration",
            "MedicationDispense",
            "MedicationStatement",
            "Procedure",
            "Immunization",
            "ImagingStudy",
        }
    ),
    ("Observation", "device"): frozenset({"Device", "DeviceMetric"}),
    ("Procedure", "subject"): frozenset({"Patient", "Group"}),
    ("Procedure", "focalDevice.manipulated"): frozenset({"Device"}),
    ("DeviceUseStatement", "subject"): frozenset({"Patient", "Group"}),
    ("DeviceUseStatement", "device"): frozenset({"Device"}),
    ("DeviceUseStatement", "derivedFrom"): frozenset(
        {
            "ServiceRequest",
            "Procedure",
            "Claim",
            "Observation",
            "QuestionnaireResponse",
            "DocumentReference",
        }
    ),
    ("Device", "patient"): frozenset({"Patient"}),
    ("AdverseEvent", "subject"): frozenset({"Patient", "Group", "Practitioner", "RelatedPerson"}),
    ("AdverseEvent", "suspectEntity.instance"): frozenset(
        {
            "Immunization",
            "Procedure",
            "Substance",
            "Medication",
            "MedicationAdministration",
            "MedicationStatement",
            "Device",
        }
    ),
    ("MedicationStatement", "subject"): frozenset({"Patient", "Group"}),
    ("DeviceRequest", "subject"): frozenset({"Patient", "Group", "Location", "Device"}),
}
"""(resource type, path of the element holding the Reference) -> allowed target types."""

DATETIME = re.compile(r"^\d{4}(-\d\d(-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d))?)?)?$")
LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
VALUE_KEYS = ("valueInteger", "valueQuantity", "valueCodeableConcept", "valueString")


class FhirCheckError(TensControlError):
    """An exported bundle breaks a rule the FHIR specification (or our mapping) sets."""


# Verhoeff tables, for SNOMED CT identifiers' check digit
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_ok(digits: str) -> bool:
    """The Verhoeff check of a number whose last digit is its check digit (SNOMED CT ids)."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


def sctid_ok(code: str) -> bool:
    """A SNOMED CT identifier: 6 to 18 digits, no leading zero, a valid Verhoeff check digit."""
    return code.isdigit() and 6 <= len(code) <= 18 and code[0] != "0" and verhoeff_ok(code)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted path without list indexes, value) below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            yield child, value
            yield from _walk(value, child)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                yield path, item
            yield from _walk(item, path)


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    """Every Coding below ``node``: the items of a ``coding`` list (CodeableConcept.coding)."""
    for path, value in _walk(node, ""):
        if (path == "coding" or path.endswith(".coding")) and isinstance(value, dict):
            yield value


def _check_values(where: str, item: dict[str, Any], problems: list[str]) -> None:
    values = [k for k in item if k.startswith("value")]
    absent = "dataAbsentReason" in item
    if values and absent:
        problems.append(f"{where}: has both {values[0]} and dataAbsentReason (obs-6)")
    if not values and not absent:
        problems.append(f"{where}: has neither a value nor a dataAbsentReason")
    if len(values) > 1:
        problems.append(f"{where}: has more than one value[x]: {', '.join(values)}")


def check_bundle(bundle: dict[str, Any]) -> None:
    """Raise :class:`FhirCheckError` listing every problem of ``bundle`` (parsed JSON)."""
    problems = bundle_problems(bundle)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise FhirCheckError(
            "the FHIR bundle breaks "
            + f"{len(problems)} rule(s): "
            + "; ".join(problems[:10])
            + more
        )


def bundle_problems(bundle: dict[str, Any]) -> list[str]:
    """Every problem of ``bundle`` (parsed JSON), as sentences naming the resource."""
    problems: list[str] = []
    if bundle.get("type") not in REQUIRED_CODES[("Bundle", "type")]:
        problems.append(f"Bundle.type {bundle.get('type')!r} is not a Bundle type")
    entries = bundle.get("entry") or []
    types: dict[str, str] = {}
    for i, entry in enumerate(entries):
        url = entry.get("fullUrl")
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType", "?")
        if not url:
            problems.append(f"entry {i} ({rtype}) has no fullUrl")
            continue
        if url in types:
            problems.append(f"fullUrl {url} is used twice")
        types[url] = rtype
        if url.startswith("urn:uuid:") and url.removeprefix("urn:uuid:") != resource.get("id"):
            problems.append(f"{rtype} {url}: its id {resource.get('id')!r} is not its fullUrl")
    for entry in entries:
        resource = entry.get("resource") or {}
        rtype = resource.get("resourceType", "?")
        where = f"{rtype} {entry.get('fullUrl')}"
        problems.extend(_resource_problems(where, rtype, resource, types))
    return problems


def _resource_problems(
    where: str, rtype: str, resource: dict[str, Any], types: dict[str, str]
) -> list[str]:
    problems: list[str] = []
    for (kind, element), allowed in REQUIRED_CODES.items():
        if kind == rtype and element in resource and resource[element] not in allowed:
            problems.append(
                f"{where}: {element} {resource[element]!r} is not in the required value set"
            )
    for choices in MANDATORY.get(rtype, ()):
        if not any(c in resource for c in choices):
            problems.append(f"{where}: {' or '.join(choices)} is required")
    # references
    for path, value in _walk(resource, ""):
        if not path.endswith(".reference") and path != "reference":
            continue
        if not isinstance(value, str):
            continue
        target = types.get(value)
        if target is None:
            problems.append(f"{where}: {path} {value} does not resolve inside the bundle")
            continue
        allowed_targets = REFERENCE_TARGETS.get((rtype, path.removesuffix(".reference")))
        if allowed_targets is not None and target not in allowed_targets:
            problems.append(f"{where}: {path} points to a {target}, not a valid target")
    # values
    if rtype == "Observation":
        _check_values(where, resource, problems)
        own = {(c.get("system"), c.get("code")) for c in resource["code"].get("coding", [])}
        for k, part in enumerate(resource.get("component") or []):
            _check_values(f"{where} component {k + 1}", part, problems)
            codes = {(c.get("system"), c.get("code")) for c in part["code"].get("coding", [])}
            if codes & own and any(key.startswith("value") for key in part):
                problems.append(f"{where} component {k + 1}: repeats the Observation code (obs-7)")
    # codings
    for coding in _codings(resource):
        system, code = coding.get("system"), coding.get("code")
        if not system or not code:
            problems.append(f"{where}: a coding without a system or a code: {coding}")
            continue
        if not re.match(r"^(https?|urn):", str(system)):
            problems.append(f"{where}: coding system {system!r} is not an absolute URI")
        if system in CODE_SYSTEMS and code not in CODE_SYSTEMS[system][1]:
            problems.append(f"{where}: code {code!r} is not defined in {system}")
        if system == SNOMED and not sctid_ok(str(code)):
            problems.append(f"{where}: {code!r} is not a SNOMED CT identifier (check digit)")
        if system == LOINC and not LOINC_CODE.match(str(code)):
            problems.append(f"{where}: {code!r} is not a LOINC code")
        if system == AE_SEVERITY and code not in AE_SEVERITIES:
            problems.append(f"{where}: AdverseEvent severity {code!r} is not in the value set")
    # device names, timing units, quantities, periods, times
    for path, value in _walk(resource, ""):
        last = path.rsplit(".", 1)[-1]
        if path == "deviceName.type" and value not in DEVICE_NAME_TYPES:
            problems.append(f"{where}: deviceName.type {value!r} is not in the value set")
        if last in ("periodUnit", "durationUnit") and value not in TIME_UNITS:
            problems.append(f"{where}: {path} {value!r} is not a unit of time")
        if isinstance(value, dict) and "unit" in value and "value" in value:
            if value.get("system") != UCUM or value.get("code") not in UCUM_UNITS:
                problems.append(f"{where}: {path} is not a UCUM quantity the export uses")
            if not isinstance(value.get("value"), int | float):
                problems.append(f"{where}: {path} has no number")
        if last.endswith("Period") and isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            if start and end and str(end) < str(start) and len(str(start)) == len(str(end)):
                problems.append(f"{where}: {path} ends before it starts")
        is_time = last in ("effectiveDateTime", "date", "authoredOn", "recordedOn", "time")
        if (
            (is_time or last in ("start", "end"))
            and isinstance(value, str)
            and not (DATETIME.match(value))
        ):
            problems.append(f"{where}: {path} {value!r} is not a FHIR dateTime")
    return problems
