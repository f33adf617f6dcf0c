"""The EC2 backend: a fresh VM per job from a launch template, its one-job JIT config handed
over through an SSM ``SecureString`` parameter named by the instance id.

The package holds all of it: the pool's ``ec2:`` settings (:mod:`.settings`, no SDK), the
hourly prices (:mod:`.prices`), the tags every party of the hand-off spells alike
(:mod:`.tags`), the launch plan (:mod:`.launch`, pure), what an instance is to runnerscale
(:mod:`.instances`, pure), what ``auto`` stands for (:mod:`.facts`, pure), the AWS clients
and the check at start (:mod:`.aws`), the parameter hand-off (:mod:`.ssm`), the provider
(:mod:`.provider`, whose docstring says why it works the way it does), and :data:`BACKEND`,
the entry registered in the ``runnerscale.providers`` entry-point group. boto3 (the ``aws``
extra) is imported only when a pool is built, so a configuration naming ``ec2`` validates on
a host without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from runnerscale.hostlabels import HostFacts
from runnerscale.protocols import Provider, ProviderError
from runnerscale.providers.ec2.launch import Outcome
from runnerscale.providers.ec2.settings import Ec2Config
from runnerscale.providers.registry import Backend, BackendContext

if TYPE_CHECKING:
    from runnerscale.providers.ec2.provider import Ec2Provider

__all__ = ["BACKEND", "Ec2Config"]

_EXTRA = "pip install 'runnerscale[aws]'"


def build(settings: Ec2Config, context: BackendContext) -> Provider:
    """The pool's provider (imports boto3), once AWS has accepted the credentials and knows
    the launch template (blocking, at start)."""
    try:
        from runnerscale.providers.ec2.provider import Ec2Provider  # noqa: PLC0415 - an extra
    except ImportError:
        raise ProviderError(
            f"pool {context.pool}: the ec2 backend needs the boto3 package: {_EXTRA}"
        ) from None
    provider = Ec2Provider(settings, context)
    provider.check()
    return provider


def host_facts(settings: Ec2Config, provider: Provider) -> HostFacts:
    """The architecture and GPUs of the pool's instance types, asked of EC2 (they must
    agree): see :mod:`.facts`."""
    ec2: Ec2Provider = provider  # type: ignore[assignment]  # what build() made
    return ec2.host_facts()


BACKEND = Backend(
    settings=Ec2Config,
    build=build,
    description="Settings of the EC2 backend (provider: ec2): each runner on an EC2 instance "
    "of its own, launched from a launch template.",
    host_facts=host_facts,
    example="{region: eu-west-1, launch_template: runnerscale-runner, instance_types: [m7i.large]}",
    order=3,
    # Every launch attempt by its outcome; the parameters the provider deleted once their
    # runner was online, and those it swept (provider.py).
    events={"launch": get_args(Outcome), "parameter": ("deleted_online", "swept")},
)
