"""The ``ssh:`` block registered as a backend of its own, for the tests of the settings that
read a whole file while the real backend is not installed in this environment (the package's
entry point is added with the provider): the block and its errors are the same."""

from __future__ import annotations

from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.registry import Backend, BackendContext
from runnerscale.providers.ssh import pool_advice
from runnerscale.providers.ssh.settings import SshConfig


def _build(settings: SshConfig, context: BackendContext) -> Provider:
    raise ProviderError(f"pool {context.pool}: only the settings are under test")


BACKEND = Backend(
    settings=SshConfig,
    build=_build,
    description="The ssh block (tests).",
    pool_advice=pool_advice,
)
