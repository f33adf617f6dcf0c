"""The simulator in-process on a virtual clock: no sockets, no sleeping.

This is how the deterministic simulation drives it: the world's timeouts fire when virtual time
is advanced, and webhook deliveries leave through a direct call instead of HTTP.
"""

from __future__ import annotations

import json

from runnerscale.clock import VirtualClock
from runnerscale.fakegithub.server import SimulatorOptions, build_simulator
from runnerscale.fakegithub.world import QUEUE_TIMEOUT_REASON, JobSpec, WorldSettings


async def test_a_day_of_virtual_time_passes_instantly_with_webhooks_delivered_in_order() -> None:
    clock = VirtualClock()
    options = SimulatorOptions(tokens=("t",), world=WorldSettings(queue_timeout=86_400.0))
    simulator = build_simulator(options, clock, "http://simulator.invalid")
    simulator.webhooks.add_hook("http://receiver.invalid/hook", "secret")
    received: list[tuple[str, str]] = []

    async def deliver(url: str, headers: dict[str, str], body: bytes) -> int:
        received.append((headers["X-GitHub-Event"], json.loads(body)["action"]))
        return 200

    world = simulator.world
    [job] = world.create_jobs([JobSpec(repo="acme/app", labels=("self-hosted",), duration=60)])
    # A day passes; if anything waited for real time, the test's timeout would stop it.
    clock.advance(86_400.0)
    world.tick()
    for delivery in simulator.webhooks.take_ready():
        await simulator.webhooks.send(delivery, deliver)
    assert (job.status.value, job.failure_reason) == ("completed", QUEUE_TIMEOUT_REASON)
    assert received == [("workflow_job", "queued"), ("workflow_job", "completed")]
    assert [d.status for d in simulator.webhooks.log] == ["delivered", "delivered"]
