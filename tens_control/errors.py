"""The application's error base. Every error a user can cause is one of these (or a
``drivers.base.DriverError``), and its message names what is wrong and what to do."""


class TensControlError(Exception):
    """Base of the application's errors; ``str(e)`` is one clear sentence for the user."""
