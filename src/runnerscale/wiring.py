"""The one wiring of the controller: configuration in, a :class:`Controller` out.

Why one function: ``runnerscale run`` (:class:`~runnerscale.daemon.Daemon`) and ``runnerscale
simulate`` (:class:`~runnerscale.simulation.engine.Engine`) must run the same product, so that
a simulated figure is a figure of the daemon's own code. Both build their controller here: the
pools as the controller runs them (:func:`pool_runtime`: the host's capacity cap, ``min_idle``
and its warm windows clipped to it, a pool waiting for its host's labels), the loop settings
(:func:`controller_settings`: intervals, the janitor's timeouts), the GitHub poll's hints, and
the failure backoff that :class:`PoolRuntime` and the controller's loops keep.

What legitimately differs between the two is a parameter, never a copy: the clock (wall or
virtual), the GitHub client (githubkit over HTTP, or the in-process simulator), the providers
(the registry's backends, or simulated ones), the store, the host's capacity (the registry's
backend asks the real host; a simulated backend has no host of its own), the metrics hooks,
and the seeded runner names of the simulation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from runnerscale.config.schema import Config, PoolConfig
from runnerscale.controller.actions import Events, PoolRuntime
from runnerscale.controller.janitor import JanitorSettings
from runnerscale.controller.loops import Controller, ControllerSettings
from runnerscale.controller.scaleset import ScaleSetState
from runnerscale.model import PoolSpec, Target
from runnerscale.protocols import Clock, GitHubAPI, PollHints, PollPacer, Provider, Store
from runnerscale.providers.registry import backend
from runnerscale.scaleset_api import ScaleSetAPI

__all__ = [
    "Capacity",
    "PolledGitHub",
    "apply_settings",
    "build_controller",
    "controller_settings",
    "host_capacity",
    "pool_runtime",
    "scale_set_clients",
]

#: The cap a pool's host puts on its runners (None: none but ``max_runners``).
Capacity = Callable[[PoolConfig], "int | None"]


class PolledGitHub(GitHubAPI, Protocol):
    """A GitHub whose poll reads what the controller's hints say (both the client and the
    simulation's in-process GitHub read through :class:`~runnerscale.github.poller.Poller`)."""

    poll_hints: Callable[[], PollHints]


def host_capacity(pool: PoolConfig) -> int | None:
    """The cap the pool's installed backend puts on it (the local backend: its capacity)."""
    capacity_of = backend(pool.provider).capacity
    return None if capacity_of is None else capacity_of(pool.settings)


def pool_runtime(
    pool: PoolConfig,
    spec: PoolSpec,
    provider: Provider,
    waiting: str | None = None,
    *,
    capacity: Capacity = host_capacity,
) -> PoolRuntime:
    """The pool as the controller runs it. ``waiting``: why its labels are not known yet; it
    then serves no job, keeps no idle runner, and shows unhealthy with that reason."""
    cap = spec.max_runners
    host_cap = capacity(pool)
    capped_by = None
    if host_cap is not None and host_cap < cap:
        # A pool cannot run more runners than its host allows (the local backend's capacity).
        cap = host_cap
        capped_by = pool.capped_note(host_cap)
    capped = replace(
        spec,
        max_runners=cap,
        min_idle=0 if waiting else min(spec.min_idle, cap),
        ready=waiting is None,
    )
    schedule = pool.min_idle_schedule
    runtime = PoolRuntime(
        spec=capped,
        provider=provider,
        labels=tuple(pool.labels),
        prefix=pool.runner_prefix,
        rerun_lost_jobs=pool.rerun_lost_jobs,
        create_concurrency=pool.create_concurrency,
        capped_by=capped_by,
        warm=None if schedule is None else schedule.capped(cap),
        scale_set=None
        if pool.scale_set_spec is None
        else ScaleSetState(pool.name, pool.scale_set_spec),
    )
    if waiting:
        runtime.healthy = False
        runtime.last_error = waiting
    return runtime


def controller_settings(
    config: Config, *, poll_interval: float | None = None
) -> ControllerSettings:
    """The loops' intervals and the janitor's timeouts (``poll_interval``: a policy's own)."""
    return ControllerSettings(
        poll_interval=config.poll_interval if poll_interval is None else poll_interval,
        webhook_poll_interval=config.webhook_poll_interval,
        janitor_interval=config.timeouts.janitor_interval,
        queued_recheck=config.timeouts.queued_recheck,
        janitor=JanitorSettings(
            create_timeout=config.timeouts.create, delete_timeout=config.timeouts.delete
        ),
    )


def apply_settings(settings: ControllerSettings, config: Config) -> None:
    """A reloaded configuration's intervals and timeouts, in place (the loops read them each
    cycle)."""
    fresh = controller_settings(config)
    settings.poll_interval = fresh.poll_interval
    settings.webhook_poll_interval = fresh.webhook_poll_interval
    settings.janitor_interval = fresh.janitor_interval
    settings.queued_recheck = fresh.queued_recheck
    settings.janitor.create_timeout = fresh.janitor.create_timeout
    settings.janitor.delete_timeout = fresh.janitor.delete_timeout


def scale_set_clients(
    config: Config, client_at: Callable[[Target], ScaleSetAPI]
) -> dict[str, ScaleSetAPI]:
    """The Actions-service client of each scale-set pool, by pool name: ``client_at`` is
    called once per distinct target of a scale set, and pools at one target share its client
    (the daemon's is githubkit's over HTTP, the simulation's the in-process service). Empty
    without scale-set pools."""
    clients: dict[str, ScaleSetAPI] = {}
    by_pool: dict[str, ScaleSetAPI] = {}
    for pool in config.pools:
        if pool.scale_set is None:
            continue
        target = config.scale_set_target(pool)
        if target.key not in clients:
            clients[target.key] = client_at(target)
        by_pool[pool.name] = clients[target.key]
    return by_pool


def build_controller(
    config: Config,
    *,
    store: Store,
    github: PolledGitHub,
    clock: Clock,
    providers: Mapping[str, Provider],
    waiting: Mapping[str, str] | None = None,
    capacity: Capacity = host_capacity,
    poll_interval: float | None = None,
    events: Events | None = None,
    on_job_started: Callable[[str, float], None] | None = None,
    poll_pacer: PollPacer | None = None,
    runner_suffix: Callable[[], str] | None = None,
    scale_sets: Mapping[str, ScaleSetAPI] | None = None,
    owner: str = "runnerscale",
) -> Controller:
    """The controller of ``config``, one pool per configured pool on ``providers[name]``,
    and GitHub's poll fed with its hints.

    ``waiting``: pools whose host labels are not known yet, and why. ``capacity``: the cap a
    pool's host puts on it (the installed backend's by default). ``poll_interval``: instead of
    the config's (the simulation's ``poll-60`` policy). ``events``, ``on_job_started``: metric
    hooks. ``poll_pacer``: stretches the poll when polling's share of the API budget runs low.
    ``runner_suffix``: the unique part of runner names (seeded in the simulation).
    ``scale_sets``: the Actions-service client of each scale-set pool, by pool name (the
    listeners' sessions are opened as ``owner``: the deployment's controller id).
    """
    waiting = waiting or {}
    pools = [
        pool_runtime(pool, spec, providers[pool.name], waiting.get(pool.name), capacity=capacity)
        for pool, spec in zip(config.pools, config.pool_specs(), strict=True)
    ]
    controller = Controller(
        store,
        github,
        clock,
        pools=pools,
        targets=config.to_targets(),
        settings=controller_settings(config, poll_interval=poll_interval),
        events=events,
        on_job_started=on_job_started,
        poll_pacer=poll_pacer,
        runner_suffix=runner_suffix,
        scale_sets=scale_sets,
        owner=owner,
    )
    github.poll_hints = controller.poll_hints
    return controller
