"""How a runner moves from one state to the next: the compare-and-set every store applies.

Why compare-and-set: several tasks write the same runner row (the reconcile's pool workers
creating and removing, the janitor timing runners out, observations of GitHub and the backend,
an operator). A writer that wrote back the whole row it had read before a slow call (a backend
create takes tens of seconds) would undo whatever another writer did meanwhile: a creation
finishing after the janitor had given up on it would put ``booting`` back over ``gone``. A
transition names the state(s) the writer believes the row is in and only the fields it changes;
the store moves the row only while it is still in one of those states, and says whether it did,
so the writer that lost the race learns it and stops. Keeping the argument rules here means the
SQL store the daemon uses and the in-memory store the simulation uses cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any, Final

from runnerscale.model import Runner, RunnerState

__all__ = ["CHANGEABLE_FIELDS", "checked_changes", "expected_states"]

#: Runner fields a transition may write besides the state; never the name (it is the key).
CHANGEABLE_FIELDS: Final = frozenset(field.name for field in fields(Runner)) - {"name", "state"}


def expected_states(expected: RunnerState | Collection[RunnerState]) -> frozenset[RunnerState]:
    """The states a transition accepts the row in (one state or several; at least one)."""
    states = frozenset({expected}) if isinstance(expected, RunnerState) else frozenset(expected)
    if not states or not all(isinstance(state, RunnerState) for state in states):
        raise TypeError(f"expected must be a RunnerState or a non-empty set of them: {expected!r}")
    return states


def checked_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a transition writes, refusing what is not a changeable runner field."""
    unknown = sorted(set(changes) - CHANGEABLE_FIELDS)
    if unknown:
        raise TypeError(f"a transition cannot write {', '.join(unknown)}")
    return dict(changes)
