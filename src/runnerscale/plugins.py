"""Plug-ins: the objects an entry-point group names, loaded with ``importlib.metadata``.

Why: what may be added to runnerscale without touching its files (a backend,
:mod:`runnerscale.providers.registry`; a block of a pool's settings,
:mod:`runnerscale.config.blocks`) is found through an entry-point group, the way Python finds
any installed distribution's contributions. runnerscale's own plug-ins are declared the same
way, in its ``pyproject.toml``. Each registry names its group and the type its entries must be;
this module does the reading, in one place, so the registries agree on the rules: entries in
``order`` then name order, a distribution seen twice on ``sys.path`` counted once, and an entry
of the wrong type refused with the line that declares it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol, TypeVar

__all__ = ["Ordered", "load"]


class Ordered(Protocol):
    """A plug-in's entry: where it comes in listings (lower first, then by name)."""

    @property
    def order(self) -> int: ...


T = TypeVar("T", bound=Ordered)


def load(group: str, kind: type[T]) -> dict[str, T]:
    """Every entry point of ``group``, loaded, by name, in ``order`` then name order.

    Each must name an instance of ``kind`` (else :class:`TypeError`, naming the entry point).
    Loading imports the module the entry point names (and what it imports).
    """
    found: dict[str, T] = {}
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        if point.name in found:
            continue  # the same distribution seen twice on sys.path
        entry = point.load()
        if not isinstance(entry, kind):
            raise TypeError(
                f"entry point {point.name} = {point.value} in group {group} is not a "
                f"{kind.__module__}.{kind.__qualname__} but {type(entry).__name__}"
            )
        found[point.name] = entry
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))
