"""Where the scale-set protocol's requests go, worked out from the configured GitHub API base.

The Actions service learns which scope a listener serves from a *configuration URL* on
GitHub's web origin (``https://github.com/ORG``), not from the API base runnerscale is
configured with, so the web origin is derived: ``api.github.com`` (and ``api.<host>`` of
GitHub Enterprise Cloud) is served from ``<host>``, GitHub Enterprise Server's
``HOST/api/v3`` from ``HOST``, and anything else (the simulator on loopback) from its own
origin.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from runnerscale.model import Target

#: The Actions service refuses requests without an API version (the Go client adds this one).
API_VERSION = "6.0-preview"
_GHES_API_PATH = "/api/v3"


def web_origin(api_url: str) -> str:
    """GitHub's web origin for an API base: ``https://api.github.com`` → ``https://github.com``,
    ``https://HOST/api/v3`` → ``https://HOST``, anything else → its own origin."""
    parts = urlsplit(api_url.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(
            f"github.api_url {api_url!r} is not an absolute URL: give e.g. "
            "https://api.github.com or https://HOST/api/v3"
        )
    host = parts.netloc
    path = parts.path.rstrip("/")
    if path == _GHES_API_PATH:
        return f"{parts.scheme}://{host}"
    if host.lower().startswith("api.") and not path:
        return f"{parts.scheme}://{host[len('api.') :]}"
    return f"{parts.scheme}://{host}"


def config_url(api_url: str, target: Target) -> str:
    """The configuration URL that names ``target``'s scope to the Actions service."""
    origin = web_origin(api_url)
    if target.kind == "enterprise":
        return f"{origin}/enterprises/{target.name}"
    return f"{origin}/{target.name}"  # "ORG" or "OWNER/REPO"


def registration_url(api_url: str) -> str:
    """Where a registration token is exchanged for the Actions-service admin connection."""
    return api_url.strip().rstrip("/") + "/actions/runner-registration"


def service_url(tenant_url: str, path: str, params: dict[str, str] | None = None) -> str:
    """``path`` (relative, may carry a query) under the tenant URL, with ``params`` and the
    API version added when absent."""
    base = tenant_url if tenant_url.endswith("/") else tenant_url + "/"
    return with_api_version(base + path.lstrip("/"), params)


def with_api_version(url: str, params: dict[str, str] | None = None) -> str:
    """``url`` with ``params`` set and ``api-version`` added when it has none."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(params or {})
    query.setdefault("api-version", API_VERSION)
    return urlunsplit(parts._replace(query=urlencode(query)))


def message_url(queue_url: str, message_id: int) -> str:
    """The acknowledgement URL of one message: the queue URL's path plus ``/{id}``, with the
    queue URL's own query (the session id) kept."""
    parts = urlsplit(queue_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{message_id}"))


def poll_url(queue_url: str, last_message_id: int) -> str:
    """The long-poll URL: the (opaque) queue URL with ``lastMessageId`` when one was seen."""
    if last_message_id <= 0:
        return queue_url
    parts = urlsplit(queue_url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["lastMessageId"] = str(last_message_id)
    return urlunsplit(parts._replace(query=urlencode(query)))
