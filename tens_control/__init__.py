"""tens-control: safe sessions on serial TENS units, with a trustworthy log and clinician review."""

__version__ = "0.1.0"
