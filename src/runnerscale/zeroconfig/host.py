"""What the zero-config start asks this machine: a Docker engine, the official runner's
folder, the CPUs (:class:`runnerscale.zeroconfig.decide.Host`).

Why the engine is asked through the docker backend's registry entry: the question is the
daemon's own (its provider lists the pool's containers), asked of the engine the pool would
use (``DOCKER_HOST``, or the local socket), and answered in the backend's words; nothing here
imports the Docker SDK. It runs in a thread of its own, bounded to :data:`ENGINE_WAIT`
seconds: an engine that does not answer (a ``DOCKER_HOST`` far away) must not hold the start
for the SDK's minute.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from runnerscale.config.paths import default_state_dir
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.registry import BackendContext, UnknownBackendError, backend
from runnerscale.zeroconfig.decide import DEFAULT_IMAGE, POOL

#: Seconds the Docker engine has to answer.
ENGINE_WAIT = 5.0


class ThisHost:
    """This machine, as the zero-config decision sees it."""

    def __init__(self, engine_wait: float = ENGINE_WAIT) -> None:
        self.engine_wait = engine_wait

    def cpus(self) -> int:
        return os.cpu_count() or 1

    def docker_refusal(self) -> str | None:
        answers: list[str | None] = []
        asking = threading.Thread(
            target=lambda: answers.append(_ask_engine()), name="docker-engine", daemon=True
        )
        asking.start()
        asking.join(self.engine_wait)
        if not answers:
            return f"the engine did not answer within {self.engine_wait:g} s"
        return answers[0]

    def runner_problem(self, folder: Path) -> str | None:
        if not folder.is_dir():
            return "no such folder"
        script = folder / "run.sh"
        if not script.is_file():
            return "it has no run.sh (the official runner's start script)"
        if not os.access(script, os.X_OK):
            return "its run.sh is not executable"
        return None


def _ask_engine() -> str | None:
    """None when the engine of ``DOCKER_HOST`` (or the local socket) answers; else why not,
    in the docker backend's words."""
    try:
        docker = backend("docker")
    except UnknownBackendError as error:
        return str(error)
    settings = docker.settings.model_validate({"image": DEFAULT_IMAGE})
    context = BackendContext(pool=POOL, controller_id="zero-config", state_dir=default_state_dir())
    try:
        asyncio.run(_list(docker.build(settings, context)))
    except ProviderError as error:
        return str(error)
    return None


async def _list(provider: Provider) -> None:
    try:
        await provider.list()
    finally:
        await provider.close()
