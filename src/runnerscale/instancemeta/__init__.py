"""The endpoints instances boot by: garm's metadata and callback routes, behind per-instance
tokens (:class:`InstanceRegistry`, the daemon's
:class:`~runnerscale.instance_access.InstanceAccess`)."""

from runnerscale.instancemeta.registry import (
    CALLBACK_PATH,
    METADATA_PATH,
    Instance,
    InstanceRegistry,
    SystemInfo,
)
from runnerscale.instancemeta.routes import MetadataRoute, Outcome, instance_routes

__all__ = [
    "CALLBACK_PATH",
    "METADATA_PATH",
    "Instance",
    "InstanceRegistry",
    "MetadataRoute",
    "Outcome",
    "SystemInfo",
    "instance_routes",
]
