"""When the simulated GitHub next has a timeout to apply, without scanning every entity.

The world notes an entity whenever something its deadline depends on changes; the earliest
entry whose deadline is still what the entity's ``due`` says is the answer. Entries that no
longer hold (the runner spoke since, the job was taken) are dropped when they come up, so the
cost per change is a heap push and per question amortised the same.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class Deadlines(Generic[Key]):
    """The earliest deadline of entities named by ``Key``; ``due`` gives an entity's current
    deadline (None: it has none, or is gone)."""

    def __init__(self, due: Callable[[Key], float | None]) -> None:
        self._due = due
        self._heap: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        #: The deadline last pushed per entity, so an unchanged deadline is not pushed again.
        self._noted: dict[Key, float] = {}

    def note(self, key: Key) -> None:
        """Something ``key``'s deadline depends on changed (or it came into being)."""
        when = self._due(key)
        if when is None or self._noted.get(key) == when:
            return
        self._noted[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))

    def forget(self, key: Key) -> None:
        """``key`` is gone; its entries are dropped when they come up."""
        self._noted.pop(key, None)

    def earliest(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._due(key) == when:
                return when
            heapq.heappop(heap)
            if self._noted.get(key) == when:
                del self._noted[key]
        return None
