"""Trust between patient and clinician (DESIGN.md §12, docs/prescription.md section 3):

- ``keys``: clinician key files (Ed25519, passphrase-sealed) and signatures;
- ``enrolment``: the clinic's enrolment file, pinned by ``tens-control enrol``;
- ``check``: which prescription is in force and whether it may be trusted (before every
  session, at import), and which screening overrides count;
- ``demo``: a throwaway in-memory clinic for demos, benchmarks and tests.
"""
