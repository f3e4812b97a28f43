"""The hardware layer: transports, clocks, limits, protocol drivers and the safety governor.

Knows nothing of sessions, storage or UI, and never imports ``tens_control`` or ``textual``.
"""
