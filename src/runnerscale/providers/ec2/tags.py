"""The tags of the EC2 backend: what the provider writes on an instance and its SSM parameter,
what the instance's boot script reads back, and what it writes on a notice.

Why one module: three parties must spell them alike (the provider, ``images/ec2``'s boot
script, the tests' stand-in of it), and the settings refuse a user's tag that would collide.
Every key is one the instance metadata service can show (no ``/``, no space), because the boot
script reads them there (``/latest/meta-data/tags/instance/<key>``, with the launch's
``InstanceMetadataTags=enabled``).
"""

from __future__ import annotations

__all__ = [
    "CONTROLLER",
    "HANDOFF",
    "INSTANCE_ARN",
    "INTERRUPTION",
    "INTERRUPTION_KINDS",
    "POOL",
    "RESERVED_PREFIXES",
    "RUNNER",
    "SSM_PREFIX",
]

#: The daemon's controller id: a daemon sees and touches only instances carrying its own.
CONTROLLER = "runnerscale:controller"
#: The pool's name.
POOL = "runnerscale:pool"
#: The runner's name (the instance's one runner).
RUNNER = "runnerscale:runner"
#: The pool's ``ssm_parameter_prefix``: the boot script reads ``<prefix>/<instance id>``. Not
#: a secret; the region comes from the instance metadata (``placement/region``).
SSM_PREFIX = "runnerscale:ssm-prefix"
#: How far the JIT config's hand-off got: ``pending`` from the launch until the provider has
#: written the parameter, then ``written`` (the boot script may write ``taken`` once it read
#: it). An instance still ``pending`` with no parameter is what a create interrupted between
#: the launch and the parameter left: it never runs a runner.
HANDOFF = "runnerscale:handoff"
#: On the SSM parameter only: the ARN of the instance it is for. The instance role's policy
#: lets an instance read and delete a parameter only when this tag is its own ARN
#: (``aws:ResourceTag/runnerscale:instance-arn`` equal to ``${ec2:SourceInstanceARN}``,
#: ``images/ec2/iam/instance-policy.json``).
INSTANCE_ARN = "runnerscale:instance-arn"
#: Written by the boot script on its own instance when the metadata service gives a notice;
#: its value is one of :data:`INTERRUPTION_KINDS`. Such an instance takes no new job.
INTERRUPTION = "runnerscale:interruption"
#: ``spot/instance-action`` gives ``spot-interruption``; ``events/recommendations/rebalance``
#: gives ``rebalance``.
INTERRUPTION_KINDS = ("spot-interruption", "rebalance")
#: Tag keys a user's ``tags`` may not start with (compared case-insensitively): ours, and
#: those AWS reserves for itself.
RESERVED_PREFIXES = ("runnerscale:", "aws:")
