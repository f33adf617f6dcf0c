"""A simulated backend: instances that take a while to boot, sometimes fail, and cost money.

Each pool's optional ``simulation:`` block says how its real backend behaves: the boot time
(fixed or drawn from a distribution), the share of creations that fail, the share of instances
that never register, and the price per runner-hour. :class:`SimulatedBackend` implements the
controller's :class:`Provider` protocol with those properties on the virtual clock: a created
instance connects its runner to the simulated GitHub after its boot time (scheduled with the
engine), runs the job GitHub gives it, and exits when the job ends.

It also keeps the books: for every instance, how long it was booting, idle and busy, which is
where the simulation's runner-seconds and cost come from.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.world import ApiError, World
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.simulation.occupancy import Span
from runnerscale.simulation.settings import SimulationConfig

Schedule = Callable[[float, Callable[[], None]], None]


@dataclass
class SimInstance:
    runner_name: str
    credential: str
    created_at: float
    will_register: bool
    connected_at: float | None = None
    job_started_at: float | None = None
    job_ended_at: float | None = None
    deleted_at: float | None = None

    @property
    def running(self) -> bool:
        return self.deleted_at is None and self.job_ended_at is None

    def spans(self, now: float) -> list[Span]:
        """Its life up to ``now`` (or its deletion): booting until its runner connected, then
        idle, busy while its job ran, and idle again until it was deleted."""
        end = self.deleted_at if self.deleted_at is not None else now
        connected = min(self.connected_at if self.connected_at is not None else end, end)
        spans = [Span("booting", self.created_at, connected)]
        if self.job_started_at is None:
            spans.append(Span("idle", connected, end))
        else:
            job_end = min(self.job_ended_at if self.job_ended_at is not None else end, end)
            spans += [
                Span("idle", connected, self.job_started_at),
                Span("busy", self.job_started_at, job_end),
                Span("idle", job_end, end),
            ]
        return [span for span in spans if span.end > span.start]

    def seconds(self, now: float) -> tuple[float, float, float]:
        """(booting, idle, busy) seconds up to ``now`` (or its deletion)."""
        totals = dict.fromkeys(("booting", "idle", "busy"), 0.0)
        for span in self.spans(now):
            totals[span.state] += span.end - span.start
        return totals["booting"], totals["idle"], totals["busy"]


class SimulatedBackend:
    """:class:`~runnerscale.protocols.Provider` for one pool, on the virtual clock."""

    def __init__(
        self,
        pool: str,
        model: SimulationConfig,
        world: World,
        schedule: Schedule,
        rng: random.Random,
    ) -> None:
        self.pool = pool
        self.model = model
        self.world = world
        self._schedule = schedule
        self._rng = rng
        self.instances: dict[str, SimInstance] = {}
        #: Every instance ever created, for the books.
        self.history: list[SimInstance] = []

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def create(self, spec: InstanceSpec) -> Instance:
        if self._chance(self.model.create_failure_rate):
            raise ProviderError(f"pool {self.pool}: simulated creation failure")
        config = decode(spec.jitconfig)
        now = self.world.now
        instance = SimInstance(
            runner_name=spec.runner_name,
            credential=config.credential,
            created_at=now,
            will_register=not self._chance(self.model.never_register_rate),
        )
        self.instances[spec.runner_name] = instance
        self.history.append(instance)
        if instance.will_register:
            boot = max(0.0, self.model.boot_time.sample(self._rng))
            self._schedule(now + boot, lambda: self._boot(instance))
        return self._view(instance)

    def _boot(self, instance: SimInstance) -> None:
        if not instance.running:
            return
        try:
            self.world.runner_connect(instance.credential)
        except ApiError:
            return  # deleted in GitHub while booting: it sits until the backend removes it
        instance.connected_at = self.world.now

    def job_started(self, runner_name: str, at: float) -> None:
        instance = self.instances.get(runner_name)
        if instance is not None:
            instance.job_started_at = at

    def job_ended(self, runner_name: str, at: float) -> None:
        instance = self.instances.get(runner_name)
        if instance is not None and instance.job_ended_at is None:
            instance.job_ended_at = at

    async def delete(self, instance_id: str) -> None:
        instance = self.instances.pop(instance_id, None)
        if instance is not None and instance.deleted_at is None:
            instance.deleted_at = self.world.now

    async def get(self, instance_id: str) -> Instance | None:
        instance = self.instances.get(instance_id)
        return self._view(instance) if instance is not None else None

    async def list(self) -> list[Instance]:
        return [self._view(instance) for instance in self.instances.values()]

    async def close(self) -> None:
        """Nothing to release."""

    def _view(self, instance: SimInstance) -> Instance:
        return Instance(
            id=instance.runner_name,
            runner_name=instance.runner_name,
            pool=self.pool,
            running=instance.running,
            exit_code=None if instance.running else 0,
            created_at=instance.created_at,
        )

    def state_counts(self) -> tuple[int, int, int]:
        """(booting, idle, busy) instances right now."""
        booting = idle = busy = 0
        for instance in self.instances.values():
            if instance.connected_at is None:
                booting += 1
            elif instance.job_started_at is not None and instance.job_ended_at is None:
                busy += 1
            else:
                idle += 1
        return booting, idle, busy

    def spans(self, now: float) -> tuple[Span, ...]:
        """Every instance's spans, for :func:`~runnerscale.simulation.occupancy.bucketed`."""
        return tuple(span for instance in self.history for span in instance.spans(now))

    def seconds(self, now: float) -> tuple[float, float, float]:
        totals = [0.0, 0.0, 0.0]
        for instance in self.history:
            for index, value in enumerate(instance.seconds(now)):
                totals[index] += value
        return totals[0], totals[1], totals[2]

    def cost(self, now: float) -> float:
        return sum(self.seconds(now)) / 3600.0 * self.model.cost_per_hour
