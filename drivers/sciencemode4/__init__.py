"""Hasomed P24 through ScienceMode4 (mid level): framing, codec, programs and host driver.

See ``docs/devices.md`` (the P24 section) for the protocol facts and how each was verified.
"""
