"""Widgets of the patient UI."""
