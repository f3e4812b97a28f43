"""A TENS unit in software. Imports only the hardware layer's codecs, limits and clock.

Importing this package registers the ``sim://`` pyserial URL scheme (``simulator.protocol_sim``).
"""

import serial

if "simulator" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("simulator")
