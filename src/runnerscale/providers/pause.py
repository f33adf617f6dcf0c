"""A test hook, off by default: a create stands still after one of its steps.

Why: a ``kill -9`` of the daemon between two steps of a create (a runner folder made but its
record not yet written, a container created but not started) leaves something behind that the
backend must still list and the janitor remove. The tests prove it with a real SIGKILL at each
step, so the process must stop exactly there: with ``RUNNERSCALE_PAUSE_CREATE`` set to
``"STEP FILE"``, each create that reaches ``STEP`` adds a line to ``FILE`` (to say it is there:
a test of several creates counts the lines) and then waits forever, until it is killed. Each
backend names its steps where it calls :func:`pause_after`. Unset, it costs one environment
lookup; the variable never reaches a runner (the local backend scrubs every ``RUNNERSCALE_``
variable, containers get none of the daemon's environment).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

#: ``"STEP FILE"``: each create reaching ``STEP`` adds a line to ``FILE``, then waits to be killed.
PAUSE_ENV = "RUNNERSCALE_PAUSE_CREATE"


def pause_after(step: str) -> None:
    """Stand still here for good when :data:`PAUSE_ENV` names ``step`` (tests only)."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    name, _, marker = wanted.partition(" ")
    if name != step:
        return
    with Path(marker).open("a") as said:
        said.write(f"{os.getpid()} {threading.get_ident()}\n")
    threading.Event().wait()  # until SIGKILL: what a crash right here leaves is the point
