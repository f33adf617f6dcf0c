"""What ``runnerscale pools drain`` says, and how ``--wait`` follows a drain: on a clock of the
test's own (no waiting), against status answers as the control API gives them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from runnerscale.poolsview import DrainWaitError, drained_lines, resumed_line, wait_drained


class Ticking:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += seconds


def status(drain: dict[str, Any] | None, last_error: str | None = None) -> dict[str, Any]:
    return {"pools": [{"name": "linux", "drain": drain, "last_error": last_error}]}


def drain(state: str, *, swept: bool = False, busy: int = 0) -> dict[str, Any]:
    return {"since": 0.0, "busy_left": busy, "leaving": 0, "swept": swept, "state": state}


def reads(*answers: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The answers in turn, the last one again and again."""
    yield from answers
    while True:
        yield answers[-1]


def test_the_drain_says_what_it_removed_and_what_is_left() -> None:
    answer = {"pool": "linux", "removed": ["r-1", "r-2"], "left": ["r-3"], "already": False}
    assert drained_lines(answer) == [
        "pool linux drained: it starts no runner (runnerscale pools resume linux puts it back "
        "in service)",
        "removed now: 2 (r-1, r-2)",
        "left: 1 (r-3): busy runners finish their jobs, then the backend is swept",
    ]
    again = {"pool": "linux", "removed": [], "left": [], "already": True}
    assert drained_lines(again) == [
        "pool linux was drained already: it starts no runner",
        "removed now: 0",
        "no runner left: the backend is swept at the daemon's next poll",
    ]
    assert resumed_line({"pool": "linux", "resumed": True}) == "pool linux resumed: it scales again"
    assert resumed_line({"pool": "linux", "resumed": False}) == (
        "pool linux was not drained: nothing changed"
    )


def test_wait_says_each_stage_once_until_swept() -> None:
    clock, said = Ticking(), list[str]()
    answers = reads(
        status(drain("draining: 2 busy runners left", busy=2)),
        status(drain("draining: 2 busy runners left", busy=2)),
        status(drain("draining: 1 busy runner left", busy=1)),
        status(drain("drained")),
        status(drain("drained, backend swept", swept=True)),
    )
    wait_drained(lambda: next(answers), "linux", 60, said.append, now=clock.now, sleep=clock.sleep)
    assert said == [
        "pool linux: draining: 2 busy runners left",
        "pool linux: draining: 1 busy runner left",
        "pool linux: drained",
        "pool linux: drained, backend swept",
    ]
    assert clock.at == 4.0


def test_wait_gives_up_after_the_timeout_saying_what_is_left() -> None:
    clock, said = Ticking(), list[str]()
    answers = reads(status(drain("drained"), last_error="sweeping its backend failed: 503"))
    with pytest.raises(DrainWaitError) as raised:
        wait_drained(
            lambda: next(answers), "linux", 5, said.append, now=clock.now, sleep=clock.sleep
        )
    assert str(raised.value) == (
        "pool linux: still drained, its backend not swept, after 5s (last error: sweeping its "
        "backend failed: 503); busy runners finish their jobs (runnerscale status shows them): "
        "wait longer with a larger --timeout"
    )
    assert clock.at == 5.0


def test_wait_stops_when_the_pool_was_resumed_meanwhile() -> None:
    clock = Ticking()
    answers = reads(status(drain("draining: 1 busy runner left", busy=1)), status(None))
    with pytest.raises(DrainWaitError, match=r"^pool linux is not drained \(resumed"):
        wait_drained(
            lambda: next(answers), "linux", 60, lambda line: None, now=clock.now, sleep=clock.sleep
        )
