"""The instances' routes served over real HTTP on loopback, on a virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette

from runnerscale.clock import VirtualClock
from runnerscale.httpserve import LoopbackServer
from runnerscale.instancemeta import InstanceRegistry, MetadataRoute, Outcome, instance_routes


@dataclass
class Served:
    registry: InstanceRegistry
    clock: VirtualClock
    url: str
    counted: list[tuple[MetadataRoute, Outcome]] = field(default_factory=list)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = VirtualClock()
    registry = InstanceRegistry(clock)
    counted: list[tuple[MetadataRoute, Outcome]] = []

    def count(route: MetadataRoute, outcome: Outcome) -> None:
        counted.append((route, outcome))

    app = Starlette(routes=instance_routes(registry, count))
    async with LoopbackServer(app) as server:
        registry.serve_at(server.url)
        yield Served(registry, clock, server.url, counted)
