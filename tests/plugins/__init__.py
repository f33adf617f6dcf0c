"""Backends and a pool block defined outside ``src/``, registered the way any third-party one
is: through the ``runnerscale.providers`` and ``runnerscale.pool_blocks`` entry-point groups
(see ``entry_points.py``)."""
