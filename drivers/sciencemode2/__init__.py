"""Hasomed RehaStim 2 through ScienceMode2: framing, codec and host driver.

See ``docs/devices.md`` for users and ``../shared/protocols/sciencemode2.md`` for the facts.
"""
