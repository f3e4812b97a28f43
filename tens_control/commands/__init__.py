"""One module per ``tens-control`` command (see ``tens_control.cli``)."""
