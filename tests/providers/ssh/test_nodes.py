"""A node's memory and health transitions (``providers/ssh/nodes.py``), without I/O: what a
listing replaces, what it must not undo, how a down node's instances are reported, and that a
transition is logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runnerscale.model import Instance
from runnerscale.providers.ssh.connection import NodeAddress, NodeConnection, SshOptions
from runnerscale.providers.ssh.nodes import NOT_CHECKED, Node, split_instance_id

NAME = "10.0.0.12:2222"


def make_node(slots: int | None = 2) -> Node:
    connection = NodeConnection(
        NodeAddress.parse(NAME), SshOptions(user="runner", known_hosts=Path("/nonexistent"))
    )
    return Node(NAME, connection, pool="vps", slots=slots, labels=["Deploy"], clock=lambda: 0.0)


def instance(name: str, *, running: bool = True) -> Instance:
    return Instance(
        id=name, runner_name=name, pool="vps", running=running, exit_code=None if running else 1
    )


def test_ids_name_the_node() -> None:
    assert split_instance_id(f"{NAME}/runner-1") == (NAME, "runner-1")
    assert split_instance_id("[::1]:22/runner-1") == ("[::1]:22", "runner-1")
    for text in ("runner-1", "/runner-1", f"{NAME}/"):
        assert split_instance_id(text) is None


def test_a_listing_replaces_the_memory_but_not_what_was_learned_while_it_ran() -> None:
    node = make_node()
    node.seen([instance("a"), instance("b")], node.generation)
    assert set(node.instances) == {"a", "b"}

    since = node.generation  # a listing begins...
    node.seen_one("c", instance("c"))  # ...a creation finishes...
    node.seen_one("a", None)  # ...a removal too...
    node.seen([instance("a"), instance("b")], since)  # ...and the listing answers
    assert set(node.instances) == {"b", "c"}

    older = node.generation - 1
    node.seen([instance("b"), instance("c"), instance("d")], node.generation)
    node.seen([], older)  # a listing begun earlier, answering late, changes nothing
    assert set(node.instances) == {"b", "c", "d"}


def test_its_state_counts_what_it_holds_and_creates() -> None:
    node = make_node()
    node.seen([instance("a")], node.generation)
    node.creating.add("b")
    node.creating.add("a")  # (not counted twice)
    state = node.state()
    assert (state.up, state.slots, state.runners, state.reason) == (False, 2, 2, NOT_CHECKED)
    assert state.extra_labels == frozenset({"deploy"})
    node.mark_up()
    assert (node.state().up, node.state().reason) == (True, "")
    assert make_node(slots=None).state().slots == 0  # until nproc answers


def test_a_down_nodes_instances_are_reported_running_with_the_reason() -> None:
    node = make_node()
    node.mark_up()
    node.seen([instance("a"), instance("b", running=False)], node.generation)
    node.mark_down(f"node {NAME}: cannot connect: Connection refused")
    reported = node.remembered()
    assert [i.id for i in reported] == [f"{NAME}/a", f"{NAME}/b"]
    assert all(i.running and i.exit_code is None and not i.incomplete for i in reported)
    assert {i.detail for i in reported} == {
        f"node {NAME} is down since 1970-01-01 00:00:00 UTC: cannot connect: Connection refused"
    }
    outward = node.outward(
        Instance(id="a", runner_name="a", pool="vps", running=True, detail="pid 7")
    )
    assert (outward.id, outward.detail) == (f"{NAME}/a", f"node {NAME}: pid 7")


def test_a_transition_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runnerscale.providers.ssh")
    node = make_node()
    node.mark_down("did not answer")  # the first check failed
    node.mark_down("did not answer")
    node.mark_down("cannot connect")
    node.mark_up()
    node.mark_up()
    node.mark_down("gone again")
    said = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert said == [
        (logging.WARNING, f"pool vps: node {NAME} is down: did not answer"),
        (logging.INFO, f"pool vps: node {NAME} is back up (2 slots)"),
        (logging.WARNING, f"pool vps: node {NAME} is down: gone again"),
    ]
    assert node.reason == "gone again"
    assert node.down.is_set()


def test_what_was_recalled_after_a_restart_is_reported_unknown_until_a_listing() -> None:
    node = make_node()
    node.recall([instance("a")], 3600.0)
    node.mark_down("cannot connect: Connection refused")
    (reported,) = node.remembered()
    assert reported.running
    assert reported.detail == (
        f"node {NAME} is down since 1970-01-01 00:00:00 UTC: cannot connect: Connection refused "
        "(its runners as recorded at 1970-01-01 01:00:00 UTC, before a restart: their state is "
        "unknown)"
    )
    assert node.state().runners == 1
    node.mark_up()
    node.seen([instance("b")], node.generation)  # the node answers: the memory is replaced
    assert set(node.instances) == {"b"}
    assert node.recalled_at is None
