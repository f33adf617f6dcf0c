"""Backends defined outside ``src/``, registered the way any third-party backend is: through
the ``runnerscale.providers`` entry-point group (see ``entry_points.py``)."""
