"""What an instance may fetch from the daemon, by the token its backend handed it.

Why: a backend that runs a provider program (garm's external provider contract,
:mod:`runnerscale.providers.external`) does not put the runner's JIT config on the instance
itself. It hands the provider a per-instance token and two URLs, and the instance's boot
script fetches its JIT config from the daemon with that token and reports its progress. The
daemon serves those endpoints on ``server.listen`` (:mod:`runnerscale.instancemeta`); a
backend reaches them only through :class:`InstanceAccess`, given in its
:class:`~runnerscale.providers.registry.BackendContext`.

The rules every implementation keeps:

* a grant's token is a secret (never in a log line, an error, a repr or a metric label);
* each secret behind it (the JIT config) is readable once: a second read is refused;
* the token expires at ``expires_at`` (then every request with it is refused as
  unauthorised), and when revoked;
* the instance's status reports are kept (the last one, and whether it said ``failed``), so
  that the backend can report a failed boot as an instance that stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

__all__ = [
    "BootStatus",
    "InstanceAccess",
    "InstanceGrant",
    "InstanceReport",
]

#: What an instance's boot script may report (garm's values for the status callback).
BootStatus: TypeAlias = Literal["installing", "running", "failed", "idle", "active"]


@dataclass(frozen=True)
class InstanceGrant:
    """One instance's access: its token (a secret) and where it reaches the daemon."""

    runner_name: str
    token: str = field(repr=False)
    #: The base URL of the metadata endpoints (garm's ``metadata-url``), no trailing slash.
    metadata_url: str
    #: The URL of the status callback (garm's ``callback-url``), no trailing slash.
    callback_url: str
    #: Wall-clock time (seconds since the epoch) after which the token is refused.
    expires_at: float


@dataclass(frozen=True)
class InstanceReport:
    """The last status an instance reported through the callback."""

    status: BootStatus
    #: Its message, as the instance wrote it (untrusted: log through ``logs.untrusted``).
    message: str
    #: When it arrived (wall clock).
    at: float
    #: Whether any report of this instance said ``failed`` (it never boots then).
    failed: bool = False


class InstanceAccess(Protocol):
    """The daemon's per-instance credentials, as a backend uses them."""

    def grant(
        self, *, pool: str, runner_name: str, jitconfig: str, lifetime: float
    ) -> InstanceGrant:
        """A new token for the instance that will run ``runner_name``, valid for
        ``lifetime`` seconds, behind which ``jitconfig`` is readable once. Granting again for
        the same runner replaces the earlier grant (its token stops working)."""
        ...

    def revoke(self, runner_name: str) -> None:
        """Forget the runner's grant and reports (its token stops working). Unknown: no-op."""
        ...

    def report(self, runner_name: str) -> InstanceReport | None:
        """The runner's instance's last status report, None when it reported none."""
        ...
