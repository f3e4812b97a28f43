"""The clinician review UI (``tens-control review``): a Textual app of its own, separate from
the patient UI, that reads the session log and never changes it.

- :mod:`.readonly` opens the store through a read-only SQLite connection;
- :mod:`.data` turns the store into what the screens show, using the review analytics
  (:mod:`tens_control.review`) for every figure;
- :mod:`.plot` draws charts as text;
- :mod:`.app`, :mod:`.screens`, :mod:`.widgets` and ``review.tcss`` are the Textual side.

Build the app with :func:`tens_control.ui.review.app.make_review_app`.
"""
