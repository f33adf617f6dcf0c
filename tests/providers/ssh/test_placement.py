"""Which node a runner goes to (``providers/ssh/placement.py``): pure, as table cases and
properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerscale.model import normalize_labels
from runnerscale.protocols import NodeState
from runnerscale.providers.ssh.placement import choose_node, label_group

POOL = ("self-hosted", "linux", "x64", "docker")


def node(
    name: str, *, slots: int = 4, runners: int = 0, labels: tuple[str, ...] = (), up: bool = True
) -> NodeState:
    return NodeState(
        name=name,
        up=up,
        slots=slots,
        extra_labels=frozenset(labels),
        reason="" if up else "did not answer",
        runners=runners,
    )


def chosen(nodes: list[NodeState], labels: tuple[str, ...] = POOL, policy: str = "spread") -> str:
    found = choose_node(nodes, labels, policy)  # type: ignore[arg-type]
    return "none" if found is None else found.name


def test_labels_are_compared_as_github_does() -> None:
    assert normalize_labels([" Deploy", "X64", ""]) == frozenset({"deploy", "x64"})


@pytest.mark.parametrize(
    ("nodes", "labels", "expected"),
    [
        # The pool's labels only: a node without labels of its own.
        ([node("a", labels=("deploy",)), node("b")], POOL, "b"),
        # Pool labels + deploy: the deploy node, even when the plain one is emptier.
        ([node("a", runners=3, labels=("deploy",)), node("b")], (*POOL, "deploy"), "a"),
        # Case does not matter.
        ([node("a", labels=("deploy",)), node("b")], (*POOL, "DEPLOY"), "a"),
        # The most specific group wins: both of its labels over one of them.
        (
            [node("a", labels=("deploy",)), node("b", labels=("deploy", "gpu"))],
            (*POOL, "deploy", "gpu"),
            "b",
        ),
        # A node whose own label the runner does not have is never a candidate.
        ([node("a", labels=("gpu",))], POOL, "none"),
        # The deploy node is down: a deploy runner is refused, not put on a plain node.
        ([node("a", labels=("deploy",), up=False), node("b")], (*POOL, "deploy"), "none"),
        # Every node down.
        ([node("a", up=False), node("b", up=False)], POOL, "none"),
        # Nothing configured.
        ([], POOL, "none"),
    ],
)
def test_labels_decide_the_group(
    nodes: list[NodeState], labels: tuple[str, ...], expected: str
) -> None:
    assert chosen(nodes, labels) == expected


@pytest.mark.parametrize(
    ("nodes", "policy", "expected"),
    [
        # spread: fewest runners per slot; the first configured on a tie.
        ([node("a", runners=1), node("b")], "spread", "b"),
        ([node("a"), node("b")], "spread", "a"),
        ([node("a", slots=2, runners=1), node("b", slots=8, runners=3)], "spread", "b"),
        # pack: the first with a free slot, in configured order.
        ([node("a", runners=3), node("b")], "pack", "a"),
        ([node("a", runners=4), node("b", runners=1)], "pack", "b"),
        # Every node full by the provider's count: the least loaded, never a failure.
        ([node("a", slots=2, runners=3), node("b", slots=4, runners=5)], "pack", "b"),
        ([node("a", slots=2, runners=3), node("b", slots=4, runners=5)], "spread", "b"),
        # A down node takes nothing, however empty.
        ([node("a", up=False), node("b", runners=3)], "spread", "b"),
        ([node("a", up=False), node("b", runners=3)], "pack", "b"),
        # A node whose slots are not known yet comes last.
        ([node("a", slots=0), node("b", runners=7)], "spread", "b"),
    ],
)
def test_the_policy_decides_within_the_group(
    nodes: list[NodeState], policy: str, expected: str
) -> None:
    assert chosen(nodes, POOL, policy) == expected


def test_the_group_counts_down_nodes_too() -> None:
    nodes = [node("a", labels=("deploy",), up=False), node("b"), node("c", labels=("deploy",))]
    assert [state.name for state in label_group(nodes, (*POOL, "deploy"))] == ["a", "c"]
    assert [state.name for state in label_group(nodes, POOL)] == ["b"]


states = st.lists(
    st.builds(
        node,
        st.sampled_from(["a", "b", "c", "d", "e"]),
        slots=st.integers(1, 8),
        runners=st.integers(0, 12),
        labels=st.sampled_from([(), ("deploy",), ("gpu",), ("deploy", "gpu")]),
        up=st.booleans(),
    ),
    max_size=6,
    unique_by=lambda state: state.name,
)
wanted = st.sampled_from([POOL, (*POOL, "deploy"), (*POOL, "gpu"), (*POOL, "deploy", "gpu")])


@given(states, wanted, st.sampled_from(["spread", "pack"]))
def test_a_chosen_node_is_up_and_of_the_runners_most_specific_labels(
    nodes: list[NodeState], labels: tuple[str, ...], policy: str
) -> None:
    found = choose_node(nodes, labels, policy)  # type: ignore[arg-type]
    fitting = [state for state in nodes if state.extra_labels <= normalize_labels(labels)]
    if found is None:
        most = max((len(state.extra_labels) for state in fitting), default=0)
        assert not any(state.up and len(state.extra_labels) == most for state in fitting)
        return
    assert found.up
    assert found.extra_labels <= normalize_labels(labels)
    assert all(len(state.extra_labels) <= len(found.extra_labels) for state in fitting)


@given(states, st.sampled_from(["spread", "pack"]))
def test_a_node_with_a_free_slot_is_chosen_while_there_is_one(
    nodes: list[NodeState], policy: str
) -> None:
    group = [state for state in label_group(nodes, POOL) if state.up]
    found = choose_node(nodes, POOL, policy)  # type: ignore[arg-type]
    if any(state.runners < state.slots for state in group):
        assert found is not None
        assert found.runners < found.slots
