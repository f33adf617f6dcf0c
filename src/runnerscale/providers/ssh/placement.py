"""Which node a new runner goes to: a pure choice over the nodes' states (no I/O).

Why it looks the way it does (the rule is the contract of
:class:`~runnerscale.protocols.PlacingProvider`):

*Labels first, and strictly.* A node serves the pool's labels plus its own (``deploy``; one
the pool has already is not its own: the provider leaves it out with
:func:`~runnerscale.model.labels_beyond`, as the scaler does when it counts the room). A
runner may go only to a node whose own labels are all among the runner's, and among those only
to the most specific ones: a runner registered with the pool's labels plus ``deploy`` goes to a
``deploy`` node, one with the pool's labels alone to a node without labels of its own. The
most specific group is found among *all* configured nodes, up or down: when every ``deploy``
node is down, a ``deploy`` runner is refused rather than placed on a plain node, where a job
for ``deploy`` would run on a node the team keeps apart from it.

*Then load, by the pool's policy.* ``spread`` (the default) takes the node with the fewest
runners per slot (the first configured on a tie), so a burst lands evenly; ``pack`` takes the
first node in configured order with a free slot, so the last nodes stay empty (to be switched
off, or kept for bursts). The scaler counted the room before asking: when every node of the
group is full by this count (a creation raced another), the runner still goes to the least
loaded one instead of failing.

A node's ``runners`` count includes the creations in flight on it, so that concurrent
creations spread too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Literal, TypeAlias

from runnerscale.model import normalize_labels
from runnerscale.protocols import NodeState

__all__ = ["Policy", "choose_node", "label_group"]

#: How runners are laid out over the nodes of their label group.
Policy: TypeAlias = Literal["spread", "pack"]


def label_group(nodes: Sequence[NodeState], labels: Iterable[str]) -> tuple[NodeState, ...]:
    """The nodes a runner with ``labels`` belongs on, up or not: those whose own labels are all
    among ``labels``, keeping only the ones with the most such labels (in configured order).
    Empty when no node's labels fit."""
    wanted = normalize_labels(labels)
    fitting = [node for node in nodes if node.extra_labels <= wanted]
    if not fitting:
        return ()
    most = max(len(node.extra_labels) for node in fitting)
    return tuple(node for node in fitting if len(node.extra_labels) == most)


def _load(node: NodeState) -> tuple[bool, Fraction]:
    """Runners per slot (a node without known slots sorts last)."""
    if node.slots <= 0:
        return (True, Fraction(node.runners))
    return (False, Fraction(node.runners, node.slots))


def choose_node(
    nodes: Sequence[NodeState], labels: Iterable[str], policy: Policy = "spread"
) -> NodeState | None:
    """The node a runner with ``labels`` goes to now, or None when no node of its label group
    is up (see the module docstring for the rule)."""
    group = [node for node in label_group(nodes, labels) if node.up]
    if not group:
        return None
    if policy == "pack":
        for node in group:
            if node.runners < node.slots:
                return node
    return min(group, key=_load)  # min keeps the first of equals: configured order
