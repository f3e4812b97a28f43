"""The patient's terminal UI (Textual): the only package that imports ``textual``.

Build the app with :func:`tens_control.ui.app.make_app` and run it with
:func:`tens_control.ui.app.run_ui` (the ``tens-control`` command with no arguments does this).
The UI talks only to the :class:`~tens_control.session.SessionController` and the store; it never
touches a port. Modules here import the session layer lazily so that the first screen appears
fast (DESIGN.md P6).
"""
