"""The TLS context GitHub's certificate is verified with: one per process.

Why shared: githubkit opens an httpx client per call, and httpx builds a TLS context for each
one unless it is given one (``ssl.create_default_context`` and loading the CA bundle: about
30 ms of CPU). Every call to GitHub paid that, the start-up's access check included (issue 18).
A context with the default trust (certifi's CAs, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as
httpx reads them) holds no per-client state, so every client of the process shares one.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["default_tls", "tls_verify"]


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The process's context with httpx's default trust, built on first use."""
    return httpx.create_ssl_context()


def tls_verify(verify: bool | ssl.SSLContext) -> bool | ssl.SSLContext:
    """What to hand githubkit and httpx for ``verify``: True (the default trust) becomes the
    shared context; False (no verification) and a context of its own are kept."""
    return default_tls() if verify is True else verify
