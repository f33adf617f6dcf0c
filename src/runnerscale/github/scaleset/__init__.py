"""GitHub's runner scale sets over the Actions service: the production
:class:`~runnerscale.scaleset_api.ScaleSetAPI` (:class:`ScaleSetClient`).

Modules, one concern each: :mod:`.urls` (where requests go), :mod:`.wire` (JSON and types),
:mod:`.errors` (the service's ``typeName`` as exceptions), :mod:`.transport` (retries,
backoff, counting), :mod:`.auth` (the admin connection), :mod:`.service` (admin-token calls),
:mod:`.session` (the message session) and :mod:`.client`.
"""

from runnerscale.github.scaleset.client import ScaleSetClient

__all__ = ["ScaleSetClient"]
