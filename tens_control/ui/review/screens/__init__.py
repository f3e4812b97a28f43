"""The review screens: patient list, patient, session, and the export dialogs."""
