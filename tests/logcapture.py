"""The daemon's log, as a test can read it: every record through the daemon's own handler
(``logs.redacting_handler``: its format and its redaction), into a string."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from runnerscale.logs import redacting_handler


@contextmanager
def daemon_log(secrets: Iterable[str] = (), level: int = logging.INFO) -> Iterator[io.StringIO]:
    """While open, records of ``level`` and above from any logger are written to the
    returned buffer as the daemon writes them to stderr; pytest's own capture goes on."""
    buffer = io.StringIO()
    handler, _ = redacting_handler(buffer, secrets)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    if before > level:
        root.setLevel(level)
    handler.setLevel(level)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
