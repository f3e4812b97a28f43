"""Clinician review: analytics (:mod:`.analytics`), the report in HTML, PDF, CSV, JSON and FHIR
(:mod:`.report`, :mod:`.charts`, :mod:`.csv_export`, :mod:`.fhir_export`), and the one adapter
that reads the store (:mod:`.source`). Read-only: nothing here changes the log."""
