"""Where a pool's runners are registered and unregistered: GitHub's REST API (webhook pools)
or the pool's runner scale set (scale-set pools).

The rest of the controller asks a pool's :class:`Registrar` for a runner's JIT configuration
and for its removal, whichever demand source the pool has, and whether a registration begun
now would wait for GitHub's registration budget (the pool's worker waits for it before it
begins a creation: :mod:`runnerscale.controller.workers`). Removal answers ``BUSY`` when the
service refuses a runner that runs a job (REST: 422; a scale set: ``JobStillRunning``): that
refusal is the safe-delete check, and the runner is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from runnerscale.controller.scaleset import ScaleSetState
from runnerscale.model import Target
from runnerscale.protocols import DeleteOutcome, GitHubAPI, GitHubError, JitConfig
from runnerscale.scaleset_api import ScaleSetAPI

__all__ = ["Registrar", "RestRegistrar", "ScaleSetRegistrar"]


class Registrar(Protocol):
    def registration_wait(self, target: Target) -> float:
        """Seconds a :meth:`register` begun now would wait for a rate-limit budget before it
        is sent (0.0: none)."""
        ...

    async def registration_ready(self, target: Target) -> None:
        """Return once a :meth:`register` would be sent at once."""
        ...

    async def register(self, target: Target, name: str, labels: Sequence[str]) -> JitConfig:
        """A JIT configuration for a new runner ``name`` at ``target``."""
        ...

    def unregister_wait(self, target: Target) -> float:
        """Seconds an :meth:`unregister` begun now would wait for a rate-limit budget before
        it is sent (0.0: none)."""
        ...

    async def unregister(self, target: Target, runner_id: int) -> DeleteOutcome:
        """Remove the runner's registration: DELETED, GONE, or BUSY (it runs a job: kept)."""
        ...


@dataclass(frozen=True)
class RestRegistrar:
    """A webhook pool's runners: registered at their target over GitHub's REST API, with the
    pool's labels."""

    github: GitHubAPI

    def registration_wait(self, target: Target) -> float:
        return self.github.registration_wait(target)

    async def registration_ready(self, target: Target) -> None:
        await self.github.registration_ready(target)

    async def register(self, target: Target, name: str, labels: Sequence[str]) -> JitConfig:
        return await self.github.generate_jitconfig(target, name, labels)

    def unregister_wait(self, target: Target) -> float:
        return self.github.call_wait("delete-runner", target)

    async def unregister(self, target: Target, runner_id: int) -> DeleteOutcome:
        return await self.github.delete_runner(target, runner_id)


@dataclass(frozen=True)
class ScaleSetRegistrar:
    """A scale-set pool's runners: registered in its scale set (``generatejitconfig``), so
    they carry the scale set's name and labels and take the jobs GitHub assigns to it."""

    api: ScaleSetAPI
    state: ScaleSetState

    def registration_wait(self, target: Target) -> float:
        """0.0: the Actions service charges no REST budget for a scale set's JIT configs."""
        return 0.0

    async def registration_ready(self, target: Target) -> None:
        """Nothing to wait for (:meth:`registration_wait`)."""

    async def register(self, target: Target, name: str, labels: Sequence[str]) -> JitConfig:
        scale_set = self.state.scale_set
        if scale_set is None:
            raise GitHubError(
                f"scale set {self.state.spec.name} is not ready yet (its listener is "
                f"{self.state.session})"
            )
        return await self.api.generate_jitconfig(scale_set, name)

    def unregister_wait(self, target: Target) -> float:
        """0.0: removing a runner from its scale set is the Actions service's, not REST's."""
        return 0.0

    async def unregister(self, target: Target, runner_id: int) -> DeleteOutcome:
        return await self.api.remove_runner(runner_id)
