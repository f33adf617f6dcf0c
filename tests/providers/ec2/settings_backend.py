"""The ``ec2:`` block registered as a backend of its own, for the tests of the settings that
read a whole file while the real backend is not installed in this environment (the package's
entry point is added with the provider): the block and its errors are the same."""

from __future__ import annotations

from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.ec2.settings import Ec2Config
from runnerscale.providers.registry import Backend, BackendContext


def _build(settings: Ec2Config, context: BackendContext) -> Provider:
    raise ProviderError(f"pool {context.pool}: only the settings are under test")


BACKEND = Backend(settings=Ec2Config, build=_build, description="The ec2 block (tests).")
