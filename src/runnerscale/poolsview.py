"""What ``runnerscale pools drain`` and ``pools resume`` say, and how ``drain --wait``
follows a drain to its end, from the control API's answers.

Why apart from the command line: the words and the waiting are the logic; the command only
reads its options and calls the daemon. The waiting reads the status API (the pool's
``drain``: :class:`runnerscale.controller.pooldrain.DrainStatus`) until the backend is swept,
on a clock it is given, so it is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DrainWaitError", "drained_lines", "resumed_line", "wait_drained"]

#: Seconds between two reads of the status while waiting.
WAIT_POLL = 1.0


class DrainWaitError(Exception):
    """The drain did not end as waited for (timed out, or resumed meanwhile): what is left."""


def _names(names: object) -> list[str]:
    return [str(name) for name in names] if isinstance(names, list) else []


def drained_lines(answer: Mapping[str, Any]) -> list[str]:
    """What the drain did now (the drain endpoint's answer), in a few lines."""
    pool = str(answer.get("pool", ""))
    removed, left = _names(answer.get("removed")), _names(answer.get("left"))
    first = (
        f"pool {pool} was drained already: it starts no runner"
        if answer.get("already")
        else f"pool {pool} drained: it starts no runner (runnerscale pools resume {pool} "
        "puts it back in service)"
    )
    lines = [
        first,
        f"removed now: {len(removed)}" + (f" ({', '.join(removed)})" if removed else ""),
    ]
    if left:
        lines.append(
            f"left: {len(left)} ({', '.join(left)}): busy runners finish their jobs, then "
            "the backend is swept"
        )
    else:
        lines.append("no runner left: the backend is swept at the daemon's next poll")
    return lines


def resumed_line(answer: Mapping[str, Any]) -> str:
    pool = str(answer.get("pool", ""))
    if answer.get("resumed"):
        return f"pool {pool} resumed: it scales again"
    return f"pool {pool} was not drained: nothing changed"


def _pool_of(status: Mapping[str, Any], pool: str) -> Mapping[str, Any]:
    for entry in status.get("pools", []):
        if isinstance(entry, Mapping) and entry.get("name") == pool:
            return entry
    return {}


def wait_drained(
    read: Callable[[], Mapping[str, Any]],
    pool: str,
    timeout: float,
    say: Callable[[str], None],
    *,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll: float = WAIT_POLL,
) -> None:
    """Read the status (``read``) until the pool is drained and its backend swept, saying each
    new stage (``say``: busy runners left). :class:`DrainWaitError` after ``timeout`` seconds,
    saying what is left, or when the pool was resumed meanwhile."""
    deadline = now() + timeout
    said = ""
    while True:
        entry = _pool_of(read(), pool)
        drain = entry.get("drain")
        if not isinstance(drain, Mapping):
            raise DrainWaitError(f"pool {pool} is not drained (resumed meanwhile?)")
        state = str(drain.get("state", ""))
        if state != said:
            say(f"pool {pool}: {state}")
            said = state
        if drain.get("swept"):
            return
        if now() >= deadline:
            error = entry.get("last_error")
            why = f" (last error: {error})" if error else ""
            raise DrainWaitError(
                f"pool {pool}: still {state}, its backend not swept, after {timeout:g}s{why}; "
                "busy runners finish their jobs (runnerscale status shows them): wait longer "
                "with a larger --timeout"
            )
        sleep(min(poll, max(0.0, deadline - now())))
