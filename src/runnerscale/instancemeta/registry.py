"""The daemon's per-instance tokens: :class:`~runnerscale.instance_access.InstanceAccess`.

Why kept here and not in the store: a grant lives for one boot (minutes), belongs to the
daemon that created the instance, and its secrets must never be written anywhere; a daemon
that restarts loses them, and the instance's boot fails and is replaced like any failed boot.

How the secrets are held: a token is kept only as its SHA-256 (compared in constant time), so
nothing in memory or a dump gives it back; the JIT config is split into the runner's files at
grant time, and each file is dropped as it is read (each secret is readable once). A token
works until it expires (the injected clock), is revoked or replaced, or the instance reported
that its boot ended (``idle``, ``failed``, or any status but ``installing``): garm's rule that
only an instance still installing may call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass, field

from runnerscale.clock import Clock
from runnerscale.instance_access import BootStatus, InstanceGrant, InstanceReport
from runnerscale.instancemeta.jitfiles import split_jitconfig

__all__ = ["CALLBACK_PATH", "METADATA_PATH", "Instance", "InstanceRegistry", "SystemInfo"]

log = logging.getLogger("runnerscale.instancemeta")

#: Where the metadata and the callback routes are, below the daemon's public URL (garm's).
METADATA_PATH = "/api/v1/metadata"
CALLBACK_PATH = "/api/v1/callbacks"

#: How long an expired grant's reports are kept, for a backend that never revoked it (s).
KEPT_AFTER_EXPIRY = 3600.0
#: The statuses after which an instance is still booting (its token keeps working).
_BOOTING: frozenset[str] = frozenset({"installing"})


@dataclass(frozen=True)
class SystemInfo:
    """What the instance said of its system (``system-info``), untrusted text."""

    os_name: str
    os_version: str


@dataclass
class Instance:
    """One grant, as the routes see it once its token is known."""

    pool: str
    runner_name: str
    expires_at: float
    #: The runner's files not read yet (secrets).
    files: dict[str, bytes] = field(repr=False)
    #: The ``.runner`` file's GitHub URL, whence the service name (no secret).
    github_url: str = ""
    #: Whether the JIT config could be split into files (else the credentials routes say so).
    readable: bool = True
    report: InstanceReport | None = None
    system: SystemInfo | None = None

    @property
    def ended(self) -> bool:
        """Whether the instance reported that its boot ended: its token is dead."""
        return self.report is not None and self.report.status not in _BOOTING


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class InstanceRegistry:
    """Every grant of this daemon, by runner and by token digest. One lock keeps a grant and
    the routes that read it consistent, should a backend call from a worker thread."""

    def __init__(self, clock: Clock, public_url: str | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_runner: dict[str, tuple[bytes, Instance]] = {}
        self._by_digest: dict[bytes, Instance] = {}
        self._public_url = public_url.rstrip("/") if public_url else None

    def serve_at(self, public_url: str) -> None:
        """Where instances reach the daemon (``http://10.0.0.5:8787``): known once the
        listener is bound, before any backend grants."""
        self._public_url = public_url.rstrip("/")

    @property
    def public_url(self) -> str | None:
        return self._public_url

    # ------------------------------------------------------------------ InstanceAccess

    def grant(
        self, *, pool: str, runner_name: str, jitconfig: str, lifetime: float
    ) -> InstanceGrant:
        if self._public_url is None:
            raise RuntimeError(
                "the daemon's public URL is not known yet: grant only after the daemon's "
                "listener is bound"
            )
        try:
            split = split_jitconfig(jitconfig)
            files, github_url, readable = dict(split.files), split.github_url, True
        except ValueError as error:
            log.warning("pool %s: runner %s: %s", pool, runner_name, error)
            files, github_url, readable = {}, "", False
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        expires_at = self._clock.now() + lifetime
        instance = Instance(pool, runner_name, expires_at, files, github_url, readable)
        with self._lock:
            self._forget(runner_name)
            self._forget_expired()
            self._by_runner[runner_name] = (digest, instance)
            self._by_digest[digest] = instance
        return InstanceGrant(
            runner_name=runner_name,
            token=token,
            metadata_url=self._public_url + METADATA_PATH,
            callback_url=self._public_url + CALLBACK_PATH,
            expires_at=expires_at,
        )

    def revoke(self, runner_name: str) -> None:
        with self._lock:
            self._forget(runner_name)

    def report(self, runner_name: str) -> InstanceReport | None:
        with self._lock:
            held = self._by_runner.get(runner_name)
        return None if held is None else held[1].report

    def _forget_expired(self) -> None:
        """Drop grants expired for :data:`KEPT_AFTER_EXPIRY` (a backend that never revoked
        them: the registry does not grow without end)."""
        horizon = self._clock.now() - KEPT_AFTER_EXPIRY
        for name in [n for n, (_, i) in self._by_runner.items() if i.expires_at < horizon]:
            self._forget(name)

    def _forget(self, runner_name: str) -> None:
        held = self._by_runner.pop(runner_name, None)
        if held is not None:
            self._by_digest.pop(held[0], None)

    # ------------------------------------------------------------------ what the routes ask

    def system_info(self, runner_name: str) -> SystemInfo | None:
        """What the runner's instance said of its system, None when it said nothing."""
        with self._lock:
            held = self._by_runner.get(runner_name)
        return None if held is None else held[1].system

    def authenticate(self, authorization: str | None) -> Instance | None:
        """The grant an ``Authorization`` header's token opens (garm's form: two words split
        on one space, the first not checked), None when it opens none: missing, unknown,
        expired, revoked, replaced, or its instance's boot ended."""
        if not authorization:
            return None
        parts = authorization.split(" ")
        if len(parts) != 2 or not parts[1]:
            return None
        digest = _digest(parts[1])
        with self._lock:
            instance = self._by_digest.get(digest)
            held = None if instance is None else self._by_runner.get(instance.runner_name)
        if instance is None or held is None or not hmac.compare_digest(held[0], digest):
            return None
        if self._clock.now() >= instance.expires_at or instance.ended:
            return None
        return instance

    def take_file(self, instance: Instance, name: str) -> bytes | None:
        """The runner's file ``name`` (``runner``, ``credentials``,
        ``credentials_rsaparams``), once: None when read already or never held."""
        with self._lock:
            return instance.files.pop(name, None)

    def record_status(self, instance: Instance, status: BootStatus | None, message: str) -> None:
        """The instance's report (``status`` None: unchanged, the message alone); a report
        that ends its boot ends its token."""
        previous = instance.report
        kept: BootStatus = status or (previous.status if previous else "installing")
        failed = kept == "failed" or (previous is not None and previous.failed)
        with self._lock:
            instance.report = InstanceReport(kept, message, self._clock.now(), failed)
            if instance.ended:
                instance.files.clear()  # nothing of it is read any more

    def record_system(self, instance: Instance, info: SystemInfo) -> None:
        with self._lock:
            instance.system = info
