"""A device that checks caps signed by the clinic (TSP/2 §16, DESIGN.md §12).

The one prevention software alone cannot give: a patient who controls the computer can edit
the prescription, or replace the pinned keys, but not the key inside the unit. Each test
asserts on what the simulated unit delivered.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import simulator  # noqa: F401 - registers sim://
from drivers.base import ChannelSettings, DeviceRejectedError, ErrorCode
from drivers.clock import VirtualClock
from drivers.tsp.codec import cap_message
from drivers.tsp.driver import TspDriver
from simulator.testing import ramp_driver
from tens_control.prescription import dump_prescription, sign_prescription
from tens_control.session import PreconditionError
from tens_control.store.store import Store
from tens_control.trust.demo import SIGNED_AT, clinician, demo_enrolment, pin
from tens_control.trust.keys import ClinicianKey, encode_public
from tests.session_support import make_rig, prescription

CONVENTIONAL = ChannelSettings(frequency_hz=80, pulse_width_us=200)
SERIAL = "SIM000000"  # the in-process simulator's serial for seed 0


def _key_file(tmp: Path, key: ClinicianKey) -> Path:
    path = tmp / "clinic.pub"
    path.write_text(f'public_key = "{encode_public(key.private.public_key())}"\n')
    return path


def _url(tmp: Path, key: ClinicianKey) -> str:
    return f"sim://tsp?clinic_key={_key_file(tmp, key)}&odometer={tmp / 'unit.json'}"


def test_the_unit_refuses_any_amplitude_above_the_cap_signed_for_it(tmp_path: Path) -> None:
    key = clinician()
    clock = VirtualClock()
    driver = TspDriver.open(_url(tmp_path, key), clock)
    info = driver.info
    assert info.cap_key_id == key.key_id
    assert info.signed_cap_ma == 0.0  # nothing signed yet: nothing above 0 mA
    driver.configure(1, CONVENTIONAL)
    driver.start()
    with pytest.raises(DeviceRejectedError) as refused:
        driver.set_amplitude(1, 1.0)
    assert refused.value.code is ErrorCode.LIMIT
    # a cap signed for ANOTHER unit, or by another key, or edited, is refused
    other = clinician("Dr Other")
    for signer, serial, ma, claimed in [
        (key, "SIM999999", 5.0, 5.0),
        (other, SERIAL, 5.0, 5.0),
        (key, SERIAL, 5.0, 50.0),
    ]:
        signature = signer.sign_device_cap(serial, ma, 100)
        with pytest.raises(DeviceRejectedError):
            driver.load_signed_cap(claimed, 100, signature)
    driver.load_signed_cap(5.0, 100, key.sign_device_cap(SERIAL, 5.0, 100))
    assert driver.info.signed_cap_ma == 5.0
    assert driver.info.limits is not None
    assert driver.info.limits.max_amplitude_ma == 5.0  # a device limit now (only narrows)
    driver.start()
    ramp_driver(driver, 1, 5.0)
    with pytest.raises(DeviceRejectedError):
        driver.set_amplitude(1, 5.5)
    # an older cap cannot replace a newer one (a replayed, wider old cap)
    with pytest.raises(DeviceRejectedError):
        driver.load_signed_cap(40.0, 50, key.sign_device_cap(SERIAL, 40.0, 50))
    record = driver.port.device.record  # type: ignore[attr-defined]
    assert record.max_level(1) == 5.0
    driver.close()
    # the cap is in the unit's non-volatile memory: it survives a power cycle
    again = TspDriver.open(_url(tmp_path, key), VirtualClock())
    assert again.info.signed_cap_ma == 5.0
    again.close()


def test_an_edited_prescription_on_the_computer_cannot_raise_what_the_unit_delivers(
    tmp_path: Path,
) -> None:
    """The issue's case, one step further: even with the computer's checks defeated (here the
    host software itself is given a wider prescription), the unit holds the clinic's cap."""
    key = clinician()
    url = _url(tmp_path, key)
    narrow = prescription(max_amplitude_ma=4.0)
    rig = make_rig(tmp_path)
    try:
        patient = rig.store.ensure_patient().pseudonym
        pin(rig.store, demo_enrolment(patient, key), patient)
        signed = sign_prescription(narrow, key, patient, at=SIGNED_AT, device_serials=(SERIAL,))
        assert signed.device_cap(SERIAL) is not None
        # the patient's computer ends up with a wider prescription (signed by a key the patient
        # made and pinned himself): the software allows 30 mA ...
        rogue = clinician("me")
        pin(rig.store, demo_enrolment(patient, rogue, serial=2), patient)
        wide = sign_prescription(prescription(max_amplitude_ma=30.0), rogue, patient, at=SIGNED_AT)
        wide = wide.model_copy(update={"device_caps": signed.device_caps})
        rig.store.save_prescription(
            dump_prescription(sign_prescription(wide, rogue, patient, at=SIGNED_AT)),
            author="me",
            reason="wider",
            patient=patient,
        )
        rig.c.connect(url)
        rig.c.prepare("conventional", 5)
        rig.c.start()
        rig.c.set_target(1, 30.0)
        rig.advance(30.0)
        # ... but the unit was handed the cap the clinic signed for it, and holds it
        assert rig.sim.firmware.signed_cap_ma == 4.0
        assert rig.record.max_level(1) <= 4.0
    finally:
        rig.close()


def test_a_unit_with_a_clinic_key_and_no_cap_signed_for_it_is_refused_before_a_session(
    tmp_path: Path,
) -> None:
    key = clinician()
    rig = make_rig(tmp_path, rx=prescription(max_amplitude_ma=10.0))  # signed, no device cap
    try:
        rig.c.connect(_url(tmp_path, key))
        with pytest.raises(PreconditionError, match="signed for this device"):
            rig.c.prepare("conventional", 5)
        assert rig.record.max_level() == 0.0
    finally:
        rig.close()


def test_the_cap_message_is_bound_to_the_serial_and_the_value() -> None:
    assert cap_message("SIM000001", 40.0, 1_700_000_000) == b"TSP-CAP SIM000001 40 1700000000"
    assert cap_message("SIM000001", 12.5, 1) != cap_message("SIM000002", 12.5, 1)
    key = clinician()
    raw = base64.b64decode(encode_public(key.private.public_key()))
    assert len(raw) == 32


def test_a_signed_prescription_keeps_its_device_caps_through_the_store(tmp_path: Path) -> None:
    key = clinician()
    store = Store.open(tmp_path / "db.sqlite3")
    try:
        patient = store.ensure_patient().pseudonym
        signed = sign_prescription(
            prescription(max_amplitude_ma=12.0), key, patient, device_serials=("A1", "B2")
        )
        text = dump_prescription(signed)
        assert "[[device_caps]]" in text
        from tens_control.prescription import parse_prescription

        again = parse_prescription(text, "round trip")
        assert again == signed
        cap = again.device_cap("B2")
        assert cap is not None
        assert (cap.max_ma, cap.key_id) == (12.0, key.key_id)
    finally:
        store.close()
