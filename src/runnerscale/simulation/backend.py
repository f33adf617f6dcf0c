"""A simulated backend: instances that take a while to boot, sometimes fail, and cost money.

Each pool's :class:`~runnerscale.simulation.pools.BackendModel` says how its real backend
behaves: the boot time (fixed or drawn from a distribution), the share of creations that fail,
the share of instances that never register, and what an instance costs per hour.
:class:`SimulatedBackend` implements the controller's :class:`Provider` protocol with those
properties on the virtual clock: a created instance connects its runner to the simulated
GitHub after its boot time (scheduled with the engine), runs the job GitHub gives it, and
exits when the job ends.

A pool priced by market (ec2) launches as the real provider does: on each market of its plan
in order, spot first; a spot launch refused for capacity (``spot_capacity_short_rate``) falls
to on-demand, or fails the creation when the plan has no on-demand. A spot instance may be
taken back (``spot_interruptions_per_hour``, a Poisson process per instance): it is listed
``draining`` from the notice on, as the ec2 provider lists an instance whose boot script tagged
the notice, so the controller removes it if it has no job and gives it none; two minutes later
it dies. A job running on it then fails in GitHub with the runner's shutdown words, and the
instance is listed as exited with an error: what the controller sees of a lost job in
production, so its own code records the loss and, where the pool has ``rerun_lost_jobs``,
re-runs it.

It also keeps the books: for every instance, its market and price, and how long it was
booting, idle and busy, which is where the simulation's runner-seconds and cost come from.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from runnerscale.fakegithub.jitconfig import decode
from runnerscale.fakegithub.world import ApiError, World
from runnerscale.model import Instance, InstanceSpec
from runnerscale.protocols import ProviderError
from runnerscale.simulation.occupancy import Span
from runnerscale.simulation.pools import FREE, SPOT, SPOT_NOTICE, BackendModel, Offer

#: The exit code an instance taken back mid-life is listed with (its runner got SIGTERM).
INTERRUPTED_EXIT = 143
#: Why a spot instance drains, as the ec2 provider says it.
SPOT_NOTICE_REASON = "spot interruption notice"

Schedule = Callable[[float, Callable[[], None]], None]


@dataclass
class SimInstance:
    runner_name: str
    credential: str
    created_at: float
    will_register: bool
    offer: Offer = FREE
    connected_at: float | None = None
    job_started_at: float | None = None
    job_ended_at: float | None = None
    deleted_at: float | None = None
    #: When its interruption notice came (it takes no new job from then on).
    notice_at: float | None = None
    #: When the backend took it back (it is gone, and no longer billed).
    interrupted_at: float | None = None
    #: Whether it was running a job when it was taken back.
    lost_job: bool = False

    @property
    def running(self) -> bool:
        return self.end is None and self.job_ended_at is None

    @property
    def end(self) -> float | None:
        """When it stopped existing: deleted, or taken back (None: it still exists)."""
        ends = [at for at in (self.deleted_at, self.interrupted_at) if at is not None]
        return min(ends, default=None)

    @property
    def busy(self) -> bool:
        return self.job_started_at is not None and self.job_ended_at is None

    def spans(self, now: float) -> list[Span]:
        """Its life up to ``now`` (or its end): booting until its runner connected, then
        idle, busy while its job ran, and idle again until it was deleted."""
        end = min(self.end, now) if self.end is not None else now
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
        model: BackendModel,
        world: World,
        schedule: Schedule,
        rng: random.Random,
    ) -> None:
        self.pool = model.pool
        self.model = model
        self.world = world
        self._schedule = schedule
        self._rng = rng
        self.instances: dict[str, SimInstance] = {}
        #: Every instance ever created, for the books.
        self.history: list[SimInstance] = []
        #: Spot launches refused for capacity.
        self.spot_refused = 0

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def _launch(self) -> Offer:
        """The market a launch gets: the plan's first whose capacity is not short."""
        for offer in self.model.offers:
            if offer.market == SPOT and self._chance(self.model.spot_capacity_short_rate):
                self.spot_refused += 1
                continue
            return offer
        raise ProviderError(
            f"pool {self.pool}: simulated spot capacity shortage (market: spot has no "
            "on-demand fallback)"
        )

    async def create(self, spec: InstanceSpec) -> Instance:
        if self._chance(self.model.create_failure_rate):
            raise ProviderError(f"pool {self.pool}: simulated creation failure")
        offer = self._launch()
        config = decode(spec.jitconfig)
        now = self.world.now
        instance = SimInstance(
            runner_name=spec.runner_name,
            credential=config.credential,
            created_at=now,
            will_register=not self._chance(self.model.never_register_rate),
            offer=offer,
        )
        self.instances[spec.runner_name] = instance
        self.history.append(instance)
        if instance.will_register:
            boot = max(0.0, self.model.boot_time.sample(self._rng))
            self._schedule(now + boot, lambda: self._boot(instance))
        rate = self.model.spot_interruptions_per_hour
        if offer.market == SPOT and rate > 0:
            notice = now + self._rng.expovariate(rate / 3600.0)
            self._schedule(notice, lambda: self._notice(instance))
        return self._view(instance)

    def _notice(self, instance: SimInstance) -> None:
        """AWS's two minutes' notice: from now on it is listed draining."""
        if instance.end is not None or instance.job_ended_at is not None:
            return  # gone before its time came
        instance.notice_at = self.world.now
        self._schedule(self.world.now + SPOT_NOTICE, lambda: self._take_back(instance))

    def _take_back(self, instance: SimInstance) -> None:
        """The instance is terminated under its runner: a job on it fails in GitHub as one
        whose runner was stopped by a signal, and the runner goes offline."""
        if instance.end is not None or instance.job_ended_at is not None:
            return  # removed during its notice, or its job ended in time
        instance.lost_job = instance.busy
        instance.interrupted_at = self.world.now
        # (an ApiError: deleted in GitHub meanwhile, never connected or removed)
        with contextlib.suppress(ApiError):
            self.world.runner_shut_down(instance.credential)

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
        running = instance.running
        exit_code = None if running else 0
        if instance.interrupted_at is not None:
            exit_code = INTERRUPTED_EXIT
        return Instance(
            id=instance.runner_name,
            runner_name=instance.runner_name,
            pool=self.pool,
            running=running,
            exit_code=exit_code,
            created_at=instance.created_at,
            detail="taken back by the spot market" if instance.interrupted_at is not None else "",
            price_per_hour=instance.offer.price if instance.offer.market is not None else None,
            draining=SPOT_NOTICE_REASON if instance.notice_at is not None and running else None,
        )

    def state_counts(self) -> tuple[int, int, int]:
        """(booting, idle, busy) instances right now."""
        booting = idle = busy = 0
        for instance in self.instances.values():
            if instance.end is not None:
                continue  # taken back: listed until the controller removes it, but gone
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
        return sum(self.cost_by_market(now).values())

    def cost_by_market(self, now: float) -> dict[str | None, float]:
        """What its instances cost up to ``now``, by market (None: a pool without markets),
        in the order of the pool's plan."""
        costs: dict[str | None, float] = {offer.market: 0.0 for offer in self.model.offers}
        for instance in self.history:
            seconds = sum(instance.seconds(now))
            costs[instance.offer.market] += seconds / 3600.0 * instance.offer.price
        return costs

    def launches_by_market(self) -> dict[str | None, int]:
        """How many instances it launched on each market of the plan."""
        launches: dict[str | None, int] = {offer.market: 0 for offer in self.model.offers}
        for instance in self.history:
            launches[instance.offer.market] += 1
        return launches

    @property
    def interruptions(self) -> int:
        """Instances taken back by the spot market (not counting those removed during their
        notice)."""
        return sum(1 for instance in self.history if instance.interrupted_at is not None)

    @property
    def notices(self) -> int:
        """Instances given an interruption notice."""
        return sum(1 for instance in self.history if instance.notice_at is not None)

    @property
    def jobs_lost(self) -> int:
        """Jobs that were running on an instance when it was taken back."""
        return sum(1 for instance in self.history if instance.lost_job)
