"""What ``runnerscale.metrics`` makes of the controller's status and hooks (the names, types
and labels as a whole are held to ``docs/metrics.md`` by ``tests/e2e/test_metrics.py``)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runnerscale.controller.loops import NodeStatus, PoolStatus, Status
from runnerscale.metrics import BACKEND_PAIRS_CAP, Metrics, busy_ratio


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def pool(name: str = "linux", **counts: int) -> PoolStatus:
    return PoolStatus(name=name, max_runners=8, min_idle=1, **counts)


def test_runner_seconds_count_each_state_for_as_long_as_the_counts_held() -> None:
    statuses = iter(
        [
            Status(pools=[pool(booting=2)], updated_at=100.0),
            Status(pools=[pool(booting=1, busy=1)], updated_at=105.0),
            Status(pools=[pool(idle=1, busy=1)], updated_at=115.0),
            Status(pools=[pool()], updated_at=117.0),
        ]
    )
    current: list[Status] = []

    def status() -> Status:
        return current[-1]

    metrics = Metrics(status, lambda: None, pools=["linux"])
    refreshed = metrics.events().refreshed
    for one in statuses:
        current.append(one)
        refreshed()
    seen = samples(metrics)

    def seconds(state: str) -> float:
        return seen[("runnerscale_runner_seconds_total", (("pool", "linux"), ("state", state)))]

    assert seconds("booting") == 2 * 5 + 1 * 10
    assert seconds("busy") == 1 * 10 + 1 * 2
    assert seconds("idle") == 1 * 2


def waiting_for_budget(status: Status, runners: int) -> Status:
    """``status`` with ``runners`` of its pool's booting ones waiting for GitHub's
    registration budget (``pending``, no instance yet)."""
    (only,) = status.pools
    only.waiting = {"registration_budget": runners, "create_slot": 0}
    return status


def test_a_runner_waiting_to_be_created_costs_nothing_until_its_creation_begins() -> None:
    """A runner waits ten minutes for GitHub's registration budget (counted in booting), its
    creation then begins and it boots for 30 s, comes online and runs a job for 60 s: its
    booting seconds are the 30 s from its creation's start, not the 630 s since the decision.
    (Before, the wait was charged as booting: the cost panels overstated a budget wait.)"""
    statuses = [
        waiting_for_budget(Status(pools=[pool(booting=1)], updated_at=100.0), 1),
        waiting_for_budget(Status(pools=[pool(booting=1)], updated_at=400.0), 1),
        waiting_for_budget(Status(pools=[pool(booting=1)], updated_at=700.0), 0),
        Status(pools=[pool(busy=1)], updated_at=730.0),
        Status(pools=[pool()], updated_at=790.0),
    ]
    current: list[Status] = []
    metrics = Metrics(lambda: current[-1], lambda: None, pools=["linux"])
    for one in statuses:
        current.append(one)
        metrics.events().refreshed()
    seen = samples(metrics)

    def seconds(state: str) -> float:
        return seen[("runnerscale_runner_seconds_total", (("pool", "linux"), ("state", state)))]

    assert seconds("booting") == 30.0
    assert seconds("busy") == 60.0
    assert seconds("idle") == 0.0


def test_the_busy_ratio_is_busy_over_every_runner_of_the_pool() -> None:
    assert busy_ratio(pool(booting=1, idle=1, busy=2)) == 0.5
    assert busy_ratio(pool()) == 0.0


def test_the_busy_ratio_leaves_out_the_runners_waiting_to_be_created() -> None:
    # Every runner the pool has is busy; four more wait for GitHub's registration budget or
    # a creation slot (counted in booting): they do not exist yet, and pull nothing down.
    saturated = pool(booting=4, busy=2)
    saturated.waiting = {"registration_budget": 3, "create_slot": 1}
    assert busy_ratio(saturated) == 1.0
    # One of three booting is still waiting: the two being created count.
    mixed = pool(booting=3, idle=1, busy=2)
    mixed.waiting = {"registration_budget": 1, "create_slot": 0}
    assert busy_ratio(mixed) == 0.4
    # Only waiting runners: none exists, 0 as with none at all.
    waiting_only = pool(booting=2)
    waiting_only.waiting = {"registration_budget": 2}
    assert busy_ratio(waiting_only) == 0.0


def test_every_pool_and_kind_starts_at_zero_and_no_created_series_is_exposed() -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None, pools=["linux", "gpu"])
    seen = samples(metrics)
    assert seen[("runnerscale_errors_total", (("kind", "create"), ("pool", "gpu")))] == 0.0
    assert seen[("runnerscale_runner_removals_total", (("pool", "linux"), ("reason", "idle")))] == 0
    assert seen[("runnerscale_webhook_deliveries_total", (("outcome", "bad_signature"),))] == 0
    assert seen[("runnerscale_runner_startup_seconds_count", (("pool", "gpu"),))] == 0
    assert not [name for name, _ in seen if name.endswith("_created")]


def test_runners_waiting_to_be_created_are_counted_by_what_they_wait_for() -> None:
    waiting = pool(booting=4)
    waiting.waiting = {"registration_budget": 3, "create_slot": 1}
    metrics = Metrics(lambda: Status(pools=[waiting, pool("gpu")]), lambda: None, pools=[])
    seen = samples(metrics)

    def count(name: str, reason: str) -> float:
        return seen[("runnerscale_pool_waiting_runners", (("pool", name), ("reason", reason)))]

    assert count("linux", "registration_budget") == 3
    assert count("linux", "create_slot") == 1
    assert count("gpu", "registration_budget") == count("gpu", "create_slot") == 0


def test_hooks_feed_their_families() -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None, pools=["linux"])
    events = metrics.events()
    events.online("linux", 14.0)
    events.job_ran("", 30.0)  # a job no pool serves
    events.removing("linux", "boot_timeout")
    events.tick("reconcile", 0.02)
    metrics.webhook_delivered("accepted")
    seen = samples(metrics)
    assert seen[("runnerscale_runner_startup_seconds_sum", (("pool", "linux"),))] == 14.0
    assert seen[("runnerscale_job_run_seconds_sum", (("pool", "unmatched"),))] == 30.0
    assert (
        seen[("runnerscale_runner_removals_total", (("pool", "linux"), ("reason", "boot_timeout")))]
        == 1
    )
    assert seen[("runnerscale_loop_tick_seconds_count", (("loop", "reconcile"),))] == 1
    assert seen[("runnerscale_webhook_deliveries_total", (("outcome", "accepted"),))] == 1


def test_repositories_a_poll_left_unread_are_counted_from_zero_without_a_label() -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None, pools=["linux"])
    assert samples(metrics)[("runnerscale_poll_repository_errors_total", ())] == 0
    events = metrics.events()
    events.unread(3)
    events.unread(1)
    seen = samples(metrics)
    assert seen[("runnerscale_poll_repository_errors_total", ())] == 4
    # No series per target or repository: the one series is all there is.
    assert [key for key in seen if key[0].startswith("runnerscale_poll_repository")] == [
        ("runnerscale_poll_repository_errors_total", ())
    ]


def test_failed_cycles_are_counted_by_loop_and_every_loop_starts_at_zero() -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None, pools=[])

    def loops() -> dict[str, float]:
        return {
            dict(labels)["loop"]: value
            for (name, labels), value in samples(metrics).items()
            if name == "runnerscale_loop_errors_total"
        }

    assert loops() == dict.fromkeys(("events", "reconcile", "poll", "janitor", "worker"), 0)
    events = metrics.events()
    events.failed("poll")
    events.failed("poll")
    events.failed("worker")
    assert loops() == {"events": 0, "reconcile": 0, "poll": 2, "janitor": 0, "worker": 1}


def test_the_scale_set_listeners_failures_start_at_zero_only_with_a_scale_set_pool() -> None:
    """Without a scale-set pool no listener runs: no ``scaleset`` series, as every other
    scale-set figure has none; with one, it starts at 0 as the other loops' do."""

    def loops(metrics: Metrics) -> dict[str, float]:
        return {
            dict(labels)["loop"]: value
            for (name, labels), value in samples(metrics).items()
            if name == "runnerscale_loop_errors_total"
        }

    webhooks = Metrics(lambda: Status(pools=[]), lambda: None, pools=["linux"])
    assert "scaleset" not in loops(webhooks)
    scale_sets = Metrics(lambda: Status(pools=[]), lambda: None, pools=["ss"], scale_sets=True)
    assert loops(scale_sets)["scaleset"] == 0
    scale_sets.events().failed("scaleset")
    assert loops(scale_sets)["scaleset"] == 1


def test_the_hosts_of_a_pool_over_several_are_up_or_down_with_their_slots() -> None:
    nodes = [
        NodeStatus("node1.example.net", up=True, slots=4, labels=(), runners=3),
        NodeStatus("10.0.0.12:2222", up=False, slots=2, labels=("deploy",), reason="timeout"),
    ]
    status = Status(pools=[pool("vps", busy=3), pool("linux")])
    status.pools[0].nodes = nodes
    metrics = Metrics(lambda: status, lambda: None, pools=["vps", "linux"])
    seen = samples(metrics)
    node_series = {
        key: value for key, value in seen.items() if key[0].startswith("runnerscale_node")
    }
    assert node_series == {
        ("runnerscale_node_up", (("node", "node1.example.net"), ("pool", "vps"))): 1.0,
        ("runnerscale_node_up", (("node", "10.0.0.12:2222"), ("pool", "vps"))): 0.0,
        ("runnerscale_node_slots", (("node", "node1.example.net"), ("pool", "vps"))): 4.0,
        ("runnerscale_node_slots", (("node", "10.0.0.12:2222"), ("pool", "vps"))): 2.0,
    }


def test_a_backend_counts_its_own_events_by_outcome_and_declared_ones_start_at_zero() -> None:
    declared = {"ec2": {"launch": ("launched", "insufficient_capacity")}}
    metrics = Metrics(
        lambda: Status(pools=[]), lambda: None, pools=["ec2"], backend_events=declared
    )
    record = metrics.backend_recorder("ec2")
    record("launch", "insufficient_capacity")
    record("launch", "insufficient_capacity")
    record("terminate", "gone")  # not declared: counted all the same
    seen = samples(metrics)

    def count(event: str, outcome: str) -> float:
        labels = (("event", event), ("outcome", outcome), ("pool", "ec2"))
        return seen[("runnerscale_backend_events_total", labels)]

    assert count("launch", "insufficient_capacity") == 2
    assert count("launch", "launched") == 0
    assert count("terminate", "gone") == 1


def test_what_is_no_fixed_word_is_not_a_label_and_is_said_once_without_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(lambda: Status(pools=[]), lambda: None, pools=["ec2"])
    record = metrics.backend_recorder("ec2")
    record("launch", "i-0123456789abcdef0")  # an instance id: unbounded
    record("Launch", "launched")
    record("launch", "x" * 41)
    for number in range(BACKEND_PAIRS_CAP + 5):
        record("launch", f"outcome_{number}")
    events = [name for name, _ in samples(metrics) if name == "runnerscale_backend_events_total"]
    assert len(events) == BACKEND_PAIRS_CAP
    said = [record.getMessage() for record in caplog.records if "ec2" in record.getMessage()]
    assert len(said) == 1
    assert "no short fixed word" in said[0]
    assert "i-0123" not in caplog.text
