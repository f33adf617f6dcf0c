"""The provider conformance suite (``conformance.py``) against the EC2 backend, on moto in
server mode behind the fault proxy (``tests/moto_server.py``).

Each instance boots as the boot script would boot it (``tests/ec2_boot.py``: the JIT config
read from its parameter, which is deleted, and the runner started with it in its
environment); the runner keeps running until its instance stops, as one waiting for its job
does, and exits at once when the JIT config did not reach it.
An instance "ends" by being stopped behind the provider's back (its runner is gone, the
instance stays until it is deleted), and "vanishes" by being terminated (as an operator or a
spot reclaim does). A create is interrupted with a real ``kill -9`` of a process creating it,
right after the launch (an instance that never got its JIT config); the other ways a create
fails part-way are AWS's answers lost or refused after each step.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import botocore.exceptions
import pytest

from runnerscale.model import InstanceSpec
from runnerscale.protocols import Provider
from runnerscale.providers.ec2 import tags
from runnerscale.providers.ec2.provider import Ec2Provider
from runnerscale.providers.ec2.ssm import Handoff
from tests.ec2_boot import BootStandIn
from tests.moto_server import Ec2Setup
from tests.providers.conformance import (
    LINGERING_RUNNER,
    BackendUnderTest,
    Breakage,
    Interruption,
    ProviderConformance,
)
from tests.providers.ec2 import support
from tests.providers.interrupt import create_killed_after

pytestmark = pytest.mark.timeout(180)


def _client_error(code: str, operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"injected: {code}"}}, operation
    )


class Ec2Backend(BackendUnderTest):
    def __init__(self, setup: Ec2Setup) -> None:
        super().__init__()
        self.setup = setup
        self.boot = BootStandIn(
            setup.server,
            match={tags.CONTROLLER: self.controller_id},
            command=(sys.executable, "-c", LINGERING_RUNNER),
        )

    def provider(
        self, *, pool: str | None = None, controller_id: str | None = None, **overrides: Any
    ) -> Ec2Provider:
        made: Ec2Provider = support.factory(
            self.setup, pool or self.pool, controller_id or self.controller_id, **overrides
        )()
        return made

    def _boot_step(self) -> None:
        """One pass of the stand-in, its clients' log records left out: it plays the instance
        (reading the JIT config, which botocore logs at DEBUG), whose log is not the
        daemon's."""
        here = threading.get_ident()

        def elsewhere(record: logging.LogRecord) -> bool:
            return record.thread != here

        loggers = [logging.getLogger(name) for name in ("botocore.parsers", "botocore.endpoint")]
        for each in loggers:
            each.addFilter(elsewhere)
        try:
            self.boot.step()
        finally:
            for each in loggers:
                each.removeFilter(elsewhere)

    async def booted(self, instance_id: str) -> None:
        async with asyncio.timeout(60):
            while True:
                await asyncio.to_thread(self._boot_step)
                assert instance_id not in self.boot.failures, self.boot.failures[instance_id]
                runner = self.boot.booted.get(instance_id)
                if runner is not None:
                    assert runner.returncode is None, "the runner did not get its JIT config"
                    return
                await asyncio.sleep(0.05)

    async def tags(self, instance_id: str) -> Mapping[str, str] | None:
        found = support.instance_tags(self.setup, instance_id)
        if found is None:
            return None
        return {
            "controller": found.get(tags.CONTROLLER, ""),
            "pool": found.get(tags.POOL, ""),
            "runner": found.get(tags.RUNNER, ""),
        }

    async def leftovers(self) -> list[str]:
        return support.leftovers(self.setup, self.controller_id)

    async def end(self, instance_id: str) -> None:
        self.setup.ec2.stop_instances(InstanceIds=[instance_id])
        await asyncio.to_thread(self._boot_step)  # the machine stops: its runner with it

    async def vanish(self, instance_id: str) -> None:
        self.setup.ec2.terminate_instances(InstanceIds=[instance_id])

    def breakages(self) -> Sequence[Breakage]:
        def missing_template(patch: pytest.MonkeyPatch) -> Provider:
            return self.provider(launch_template="rs-no-such-template")

        def lost_launch(patch: pytest.MonkeyPatch) -> Provider:
            provider = self.provider()
            real = provider.clients.launch.run_instances

            def lost(**request: Any) -> Any:
                real(**request)
                raise botocore.exceptions.ReadTimeoutError(endpoint_url=self.setup.server.url)

            patch.setattr(provider.clients.launch, "run_instances", lost)
            return provider

        def refused_parameter(patch: pytest.MonkeyPatch) -> Provider:
            def refused(*args: Any, **kwargs: Any) -> None:
                raise _client_error("AccessDeniedException", "PutParameter")

            patch.setattr(Handoff, "write", refused)
            return self.provider()

        def lost_parameter(patch: pytest.MonkeyPatch) -> Provider:
            real = Handoff.write

            def lost(handoff: Handoff, *args: Any, **kwargs: Any) -> None:
                real(handoff, *args, **kwargs)
                raise botocore.exceptions.ReadTimeoutError(endpoint_url=self.setup.server.url)

            patch.setattr(Handoff, "write", lost)
            return self.provider()

        def refused_tag(patch: pytest.MonkeyPatch) -> Provider:
            provider = self.provider()

            def refused(**request: Any) -> None:
                raise _client_error("UnauthorizedOperation", "CreateTags")

            patch.setattr(provider.clients.ec2, "create_tags", refused)
            return provider

        def no_capacity(patch: pytest.MonkeyPatch) -> Provider:
            self.setup.server.faults.insufficient_capacity(times=12)  # the whole plan
            return self.provider()

        return [
            Breakage("the launch template does not exist (nothing launched)", missing_template),
            Breakage("the answer to RunInstances is lost (the instance runs)", lost_launch),
            Breakage("writing the parameter is refused (after the launch)", refused_parameter),
            Breakage("the answer to PutParameter is lost (it was written)", lost_parameter),
            Breakage("tagging the hand-off written is refused (after both)", refused_tag),
            Breakage("every type, subnet and market is short of capacity", no_capacity),
        ]

    def interruptions(self) -> Sequence[Interruption]:
        async def launched_not_handed_over(spec: InstanceSpec) -> None:
            make = support.factory(self.setup, self.pool, self.controller_id)
            await create_killed_after("launched", make, spec)

        return [
            Interruption(
                "kill -9 between the launch and writing the JIT config's parameter",
                launched_not_handed_over,
            )
        ]


@pytest.fixture
async def backend(
    ec2_setup: Ec2Setup, aws_environment: dict[str, str]
) -> AsyncIterator[Ec2Backend]:
    made = Ec2Backend(ec2_setup)
    try:
        yield made
    finally:
        made.boot.stop()  # its runners; moto is reset by the next test's ec2_setup


class TestEc2Conformance(ProviderConformance):
    pass
