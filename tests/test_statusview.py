"""The status in a terminal: what one print shows, and how ``--watch`` refreshes it, rides
out a daemon that stops answering, and ends on Ctrl-C."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from runnerscale.statusview import print_status, watch

NOW = 1_700_000_000.0


def a_status(**changes: Any) -> dict[str, Any]:
    """A status as ``GET /api/v1/status`` answers it: one pool at its cap, a job waiting."""
    body: dict[str, Any] = {
        "pools": [
            {
                "name": "linux-x64",
                "max_runners": 2,
                "min_idle": 0,
                "desired": 2,
                "booting": 0,
                "idle": 0,
                "busy": 2,
                "queued": 1,
                "healthy": True,
                "last_error": None,
                "reason": "1 queued, 2 busy, 0 on the way, 0 idle: at the cap of 2, 1 wanted, wait",
            }
        ],
        "unmatched_jobs": 1,
        "unmatched": [
            {
                "id": 9,
                "repo": "acme/app",
                "labels": ["self-hosted", "[bold]gpu"],
                "reason": "no pool has the label [bold]gpu",
            }
        ],
        "queued": [
            {
                "id": 7,
                "repo": "acme/app",
                "labels": ["self-hosted", "linux"],
                "pool": "linux-x64",
                "created_at": NOW - 75,
            }
        ],
        "queue_waits": [
            {"id": n, "repo": "acme/app", "pool": "linux-x64", "started_at": NOW - 9 + n, "wait": w}
            for n, w in enumerate([1.0, 3.0, 12.0, 2.0])
        ],
        "jobs": {"queued": 2, "in_progress": 2},
        "github": {
            "rate_limit": {"core": {"limit": 5000, "remaining": 4990, "used": 10, "reset": NOW}},
            "paused": {},
        },
    }
    body.update(changes)
    return body


def printed(body: dict[str, Any]) -> str:
    out = io.StringIO()
    print_status(Console(file=out, width=100), body, NOW)
    return out.getvalue()


def test_one_print_shows_the_pools_why_jobs_wait_and_the_recent_waits() -> None:
    text = printed(a_status())
    assert "linux-x64" in text
    assert "pool linux-x64: 1 queued, 2 busy, 0 on the way, 0 idle: at the cap of 2" in text
    assert "queued jobs a pool serves: 1, the oldest:" in text
    assert "job 7 of acme/app (self-hosted, linux) for linux-x64: waiting 1m 15s" in text
    assert "unmatched jobs (no pool serves them): 1" in text
    # Labels come from workflow files: shown as written, never read as markup.
    assert "job 9 of acme/app (self-hosted, [bold]gpu): no pool has the label [bold]gpu" in text
    assert "queue waits of the last 4 jobs: median 2s, longest 12s  ▁▃█▂" in text
    assert "GitHub core: 10 used, 4990 of 5000 remaining" in text


def test_before_any_job_started_the_waits_say_so() -> None:
    text = printed(a_status(queue_waits=[], queued=[]))
    assert "queue waits: no job has started since the daemon started" in text
    assert "queued jobs" not in text


def test_a_pool_over_several_hosts_shows_a_line_per_node() -> None:
    nodes = [
        {"name": "node1.example.net", "up": True, "slots": 4, "labels": [], "reason": "",
         "since": None, "runners": 3},
        {"name": "10.0.0.12:2222", "up": False, "slots": 2, "labels": ["deploy"],
         "reason": "no answer to keepalives", "since": NOW - 303, "runners": 1},
        {"name": "10.0.0.13", "up": False, "slots": 0, "labels": [], "reason": "",
         "since": None, "runners": 0},
    ]  # fmt: skip
    body = a_status()
    body["pools"][0]["nodes"] = nodes
    text = printed(body)
    assert "pool linux-x64: node node1.example.net: up, 3 runners on 4 slots" in text
    assert (
        "pool linux-x64: node 10.0.0.12:2222 (deploy): down for 5m 03s: "
        "no answer to keepalives; 1 runner"
    ) in text
    assert "pool linux-x64: node 10.0.0.13: down: no reason given; 0 runners" in text
    # An ordinary pool has no nodes.
    assert "node" not in printed(a_status())


def test_a_runner_whose_instance_drains_says_why_and_what_becomes_of_it() -> None:
    body = a_status()
    body["pools"][0]["draining"] = [
        {"name": "rs-a", "state": "busy", "reason": "spot interruption notice"},
        {"name": "rs-b", "state": "idle", "reason": "[red]rebalance"},
    ]
    text = printed(body)
    assert (
        "pool linux-x64: runner rs-a drains (spot interruption notice): "
        "it finishes its job and takes no other"
    ) in text
    assert "pool linux-x64: runner rs-b drains ([red]rebalance): idle, being removed" in text
    assert "drains" not in printed(a_status())


def test_a_drained_pool_is_marked_and_says_how_far_its_drain_is() -> None:
    body = a_status()
    body["pools"][0]["drain"] = {
        "since": NOW - 125,
        "busy_left": 2,
        "leaving": 0,
        "swept": False,
        "state": "draining: 2 busy runners left",
    }
    text = printed(body)
    assert "linux-x64 (drained)" in text
    assert (
        "pool linux-x64: out of service for 2m 05s, draining: 2 busy runners left "
        "(runnerscale pools resume linux-x64 puts it back)"
    ) in text
    assert "drained" not in printed(a_status())


def test_what_a_pool_spends_is_shown_against_its_budget() -> None:
    body = a_status()
    body["pools"][0].update(spend_today=50.13, cost_total=1234.5, budget_per_day=50.0)
    body["pools"][0]["reason"] += (
        "; held back by the budget: $50.13 spent today of $50.00 a day, until 00:00 UTC (in 3h 05m)"
    )
    text = printed(body)
    assert (
        "pool linux-x64: $50.13 spent today (UTC) of a budget of $50.00 a day; $1234.50 in all"
    ) in text
    assert "held back by the budget: $50.13 spent today of $50.00 a day, until 00:00 UTC" in text
    # A pool without a price or a budget says nothing of money.
    assert "spent" not in printed(a_status())


def test_runners_waiting_to_be_created_say_what_they_wait_for() -> None:
    body = a_status()
    body["pools"][0].update(booting=5, waiting={"registration_budget": 3, "create_slot": 2})
    assert (
        "pool linux-x64: runners waiting to be created: 3 for GitHub's runner registration "
        "budget to reset, 2 for a free creation slot"
    ) in printed(body)
    body["pools"][0]["waiting"] = {"registration_budget": 0, "create_slot": 0}
    assert "waiting to be created" not in printed(body)
    assert "waiting to be created" not in printed(a_status())  # an older daemon's status


class UnreachableError(Exception):
    pass


class Script:
    """Reads and sleeps as a watch meets them: the answers in turn (an exception is raised),
    then Ctrl-C during the sleep after the last one."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.sleeps: list[float] = []
        self.now = NOW

    def read(self) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if not self.answers:
            raise KeyboardInterrupt

    def clock(self) -> float:
        return self.now


def watching(script: Script, *, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=terminal)
    watch(
        script.read,
        3.0,
        console,
        unavailable=(UnreachableError,),
        clock=script.clock,
        sleep=script.sleep,
    )
    return out.getvalue()


def test_piped_each_refresh_follows_the_last_and_ctrl_c_ends_it_quietly() -> None:
    busier = a_status(queue_waits=[*a_status()["queue_waits"], {**a_status()["queue_waits"][0]}])
    script = Script(a_status(), UnreachableError("nothing answers on its control socket"), busier)
    text = watching(script, terminal=False)

    assert script.sleeps == [3.0, 3.0, 3.0]  # Ctrl-C during the last
    frames = text.split("Ctrl-C to stop")
    assert len(frames) == 4  # three frames, each with its head line
    assert "not refreshed" not in frames[1]
    assert "not refreshed: nothing answers on its control socket; trying again" in frames[2]
    assert "queue waits of the last 4 jobs" in frames[2]  # the last status read, kept
    assert "queue waits of the last 5 jobs" in frames[3]
    assert "not refreshed" not in frames[3]
    assert "\x1b[" not in text  # no cursor movement in a file


def test_on_a_terminal_the_view_is_redrawn_in_place() -> None:
    script = Script(a_status(), a_status(queued=[]))
    text = watching(script, terminal=True)
    assert text.count("Ctrl-C to stop") >= 2
    assert "\x1b[?25l" in text  # the cursor hidden while it is redrawn
    assert text.rstrip().endswith("\x1b[?25h")  # and shown again at the end


def test_a_first_read_that_fails_is_the_watchs_error() -> None:
    with pytest.raises(UnreachableError, match="permission denied"):
        watching(Script(UnreachableError("permission denied")), terminal=False)
