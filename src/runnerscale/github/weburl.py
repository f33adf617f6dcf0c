"""A target's web URL (where its runners register), from the API's URL.

Why: a backend whose instances configure their runner themselves is told the URL GitHub's
``config.sh --url`` takes (garm's ``repo_url``), which is the web address, not the API's:
``https://github.com/acme/app`` for ``https://api.github.com``, ``https://HOST/acme`` for
GitHub Enterprise Server's ``https://HOST/api/v3``, ``https://SUB.ghe.com/...`` for
``https://api.SUB.ghe.com``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from runnerscale.model import Target

__all__ = ["target_web_url", "web_url"]


def web_url(api_url: str) -> str:
    """GitHub's web address for its API at ``api_url`` (no trailing slash); an API at no
    known form (the simulator) is its own web address."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path
    if path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]
    elif host.lower().startswith("api.") and not path:
        host = host[len("api.") :]
    return urlunsplit((parts.scheme, host, path, "", ""))


def target_web_url(api_url: str, target: Target) -> str:
    """The web URL of ``target``: ``.../OWNER/REPO``, ``.../ORG``, ``.../enterprises/SLUG``."""
    where = f"enterprises/{target.name}" if target.kind == "enterprise" else target.name
    return f"{web_url(api_url)}/{where}"
