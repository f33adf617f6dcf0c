"""Where instances reach this daemon: ``server.public_url``, or one made from the listener.

Why: an external provider's instances boot on other machines and call the daemon back (their
metadata and callback URLs). The daemon's own view of itself, ``server.listen``, may be a
wildcard (``0.0.0.0``), which is no address to call; then this host's primary address is the
best guess, and ``server.public_url`` says better (a NAT, a load balancer, a DNS name).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

__all__ = ["WILDCARD_HOSTS", "primary_address", "public_url"]

#: Listen hosts that mean "every interface": no address an instance could call.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names them, binds nothing

#: Documentation addresses (RFC 5737, RFC 3849): a UDP "connect" to them sends nothing, and
#: picks the interface a packet would leave by.
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def primary_address() -> str:
    """This host's address on the way out (IPv4 first), else its host name."""
    for family, probe in _PROBES:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            address = str(sock.getsockname()[0])
            if address not in WILDCARD_HOSTS:
                return address
    return socket.gethostname()


def public_url(
    configured: str | None,
    listen_host: str,
    bound_port: int,
    *,
    scheme: str = "http",
    primary: Callable[[], str] = primary_address,
) -> str:
    """The base URL instances are told: ``configured`` (``server.public_url``) when given,
    else ``SCHEME://HOST:PORT`` of the listener as bound (``bound_port``: port 0 in the
    configuration picks one), the host being this host's primary address for a wildcard."""
    if configured:
        return configured.rstrip("/")
    host = primary() if listen_host in WILDCARD_HOSTS else listen_host
    authority = f"[{host}]" if ":" in host else host
    return f"{scheme}://{authority}:{bound_port}"
