"""The screens of the patient UI (DESIGN.md §8)."""
