"""A simulation lets a webhook delivery's body go once it has left for the last time (nothing
redelivers there; 50,000 jobs' bodies were over a gigabyte), duplicated and reordered ones
included: what the daemon is told stays the same."""

from __future__ import annotations

from typing import Any

from runnerscale.fakegithub.faults import FaultPlan, WebhookFaults
from runnerscale.github.webhooks import WebhookPayloadError
from runnerscale.simulation.engine import Engine
from runnerscale.simulation.trace import TraceJob
from tests.simulation.test_simulate import X64, config

TRACE = [TraceJob(i * 0.5, "acme/app", X64, 10.0, 1000 + i, f"j{i}") for i in range(12)]


async def run(faults: WebhookFaults) -> tuple[Engine, list[str]]:
    """The engine after its run, and the verdict on every body the intake was handed."""
    engine = Engine(config(), TRACE, seed=3, faults=FaultPlan(webhooks=faults))
    verdicts: list[str] = []
    take = engine.intake.take

    def taking(body: bytes, guid: str) -> Any:
        try:
            intake = take(body, guid)
        except WebhookPayloadError:
            verdicts.append("unreadable")
            raise
        verdicts.append(intake.verdict.name)
        return intake

    engine.intake.take = taking  # type: ignore[method-assign]
    await engine.run()
    return engine, verdicts


async def test_a_delivered_body_is_let_go_and_duplicates_and_reordered_ones_still_arrive() -> None:
    faults = WebhookFaults(duplicate_rate=0.5, reorder_rate=0.5)
    engine, verdicts = await run(faults)
    delivered = [d for d in engine.hub.log if d.status == "delivered"]
    assert len(delivered) == len(engine.hub.log) >= 3 * len(TRACE)
    assert all(d.body == b"" for d in delivered)
    assert not engine._sends  # every send done
    # Each send was read: the duplicates taken as duplicates, none of them an empty body.
    assert "unreadable" not in verdicts
    assert len(verdicts) > len(delivered)  # some deliveries left twice
    # Every job served, none of them twice: the duplicates were taken as such.
    assert all(job.started_at is not None for job in engine.world.jobs.values())
