"""Repository and organisation webhooks over REST: create, list, get, delete, ping, and the
deliveries with their redelivery (``/repos/{owner}/{repo}/hooks...``, ``/orgs/{org}/hooks...``).

An autoscaler that registers its own webhook (rather than being handed one) does it through
these operations, and one that recovers from missed deliveries reads the deliveries list and
asks for redeliveries; both must meet GitHub's rules, not a friendlier version of them:

* A hook subscribes to ``events`` (default ``["push"]``, which the simulator never sends) and
  hears only those, ``*`` meaning all; every active hook gets a ``ping`` when it is created
  and on ``POST .../pings``. ``name`` must be ``web``; ``config.url`` is required;
  ``config.content_type`` is ``json`` or ``form`` (GitHub's default, a form-encoded
  ``payload=<JSON>``); the secret is write-only (answers show ``********``); ``insecure_ssl``
  is ``"0"`` or ``"1"``. A second hook with the same URL and overlapping events on the same
  resource is refused.
* Malformed bodies get GitHub's 422 ``Invalid request.`` messages (keys that are not
  permitted, values of the wrong type, required keys not supplied); semantic mistakes get a
  ``Validation Failed`` with a ``Hook`` error record.
* The deliveries list shows what was attempted, newest first, paged by ``cursor`` (the
  ``Link`` header carries the next and previous cursors) and filtered by ``status``
  (``success``: codes 200-399, ``failure``: 400-599; a delivery that got no answer counts as
  a 502). A redelivery answers 202 and sends the same GUID, body and headers again.

Who may call them: a personal access token, or an installation token of the path's owner, as
for the other repository and organisation operations (classic-token scopes are checked by
:mod:`runnerscale.fakegithub.scopes`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.routing import BaseRoute

from runnerscale.fakegithub.api import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    ORG,
    REPO,
    Reply,
    Simulator,
    enum_param,
    int_param,
    operation,
    paginate,
    read_json,
)
from runnerscale.fakegithub.auth import Caller
from runnerscale.fakegithub.entities import Owner, Repo
from runnerscale.fakegithub.webhook_payloads import ContentType
from runnerscale.fakegithub.webhooks import DEFAULT_EVENTS, HOOK_EVENTS, Delivery, Hook
from runnerscale.fakegithub.world import ApiError, not_found

#: The keys a repository hook's body may have (its schema allows no others).
_REPO_HOOK_KEYS = frozenset({"name", "config", "events", "active"})
_CONTENT_TYPES: tuple[ContentType, ...] = ("json", "form")
_CURSOR = re.compile(r"v1_(\d+)")


@dataclass(frozen=True)
class HookSettings:
    """A hook as a create request asks for it, checked."""

    url: str
    secret: str | None
    events: tuple[str, ...]
    active: bool
    content_type: ContentType
    insecure_ssl: str


def _invalid_request(detail: str) -> ApiError:
    """GitHub's answer to a body that breaks the operation's JSON schema."""
    return ApiError(422, f"Invalid request.\n\n{detail}")


def _shown(value: object) -> str:
    """A value as GitHub's schema errors quote it (Ruby's ``nil`` for null)."""
    return "nil" if value is None else json.dumps(value)


def _hook_error(code: str, field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Validation Failed",
        [{"resource": "Hook", "code": code, "field": field, "message": message}],
    )


def _typed(body: dict[str, Any], key: str, kind: type, default: Any, where: str = "") -> Any:
    """``body[key]`` if it has the JSON type ``kind`` (``bool`` is no ``int``), else
    GitHub's schema error; ``default`` when absent."""
    if key not in body:
        return default
    value = body[key]
    names = {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _invalid_request(
            f"For 'properties/{where}{key}', {_shown(value)} is not {names[kind]}."
        )
    return value


def parse_hook_request(body: object, *, org_level: bool) -> HookSettings:
    """Check a create-webhook body the way GitHub does; ``org_level`` for ``/orgs/...``,
    whose schema requires ``name`` and ``config`` (the repository one requires nothing and
    permits no other keys)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "Problems parsing JSON")
    fields = cast(dict[str, Any], body)
    if org_level:
        for key in ("name", "config"):
            if key not in fields:
                raise _invalid_request(f'"{key}" wasn\'t supplied.')
    else:
        for key in fields:
            if key not in _REPO_HOOK_KEYS:
                raise _invalid_request(f'"{key}" is not a permitted key.')
    name = _typed(fields, "name", str, "web")
    config: dict[str, Any] = _typed(fields, "config", dict, {})
    events: list[Any] = _typed(fields, "events", list, list(DEFAULT_EVENTS))
    for event in events:
        if not isinstance(event, str):
            raise _invalid_request(f"For 'items', {_shown(event)} is not a string.")
    active: bool = _typed(fields, "active", bool, True)
    if org_level and "url" not in config:
        raise _invalid_request('"url" wasn\'t supplied.')
    url = _typed(config, "url", str, "", "config/")
    content_type = _typed(config, "content_type", str, "form", "config/")
    secret = _typed(config, "secret", str, None, "config/")
    insecure_ssl = config.get("insecure_ssl", "0")

    if name != "web":
        raise _hook_error("invalid", "name", 'name must be "web"')
    if not url:
        raise _hook_error("missing_field", "url", "config.url is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _hook_error("custom", "url", f"{url!r} is not a valid http(s) URL")
    if content_type not in _CONTENT_TYPES:
        raise _hook_error(
            "invalid", "content_type", f"content_type must be json or form, not {content_type!r}"
        )
    if isinstance(insecure_ssl, int | float) and not isinstance(insecure_ssl, bool):
        insecure_ssl = str(int(insecure_ssl)) if insecure_ssl in (0, 1) else str(insecure_ssl)
    if insecure_ssl not in ("0", "1"):
        raise _hook_error("invalid", "insecure_ssl", 'insecure_ssl must be "0" or "1"')
    unknown = [event for event in events if event not in HOOK_EVENTS]
    if unknown:
        raise _hook_error(
            "invalid", "events", f"unsupported event(s): {', '.join(map(str, unknown))}"
        )
    return HookSettings(
        url=url,
        secret=secret or None,
        events=tuple(dict.fromkeys(events)),
        active=active,
        content_type=cast(ContentType, content_type),
        insecure_ssl=insecure_ssl,
    )


# ---------------------------------------------------------------------- handlers


def _resource(sim: Simulator, request: Request) -> tuple[Repo | None, Owner | None]:
    """The repository or the organisation the path names (404 if there is none)."""
    params = request.path_params
    if "org" in params:
        return None, sim.world.org(params["org"])
    return sim.world.repo(params["owner"], params["repo"]), None


def _hook(sim: Simulator, request: Request) -> Hook:
    repo, org = _resource(sim, request)
    return sim.webhooks.hook_of(int_param(request, "hook_id"), repo=repo, org=org)


async def list_hooks(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo, org = _resource(sim, request)
    page, links = paginate(request, sim.webhooks.hooks_of(repo=repo, org=org))
    return Reply(200, [sim.webhooks.hook_body(hook, sim.urls) for hook in page], links)


async def create_hook(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo, org = _resource(sim, request)
    settings = parse_hook_request(
        await read_json(request, optional=True), org_level=org is not None
    )
    hook = sim.webhooks.create_hook(
        url=settings.url,
        repo=repo,
        org=org,
        secret=settings.secret,
        events=settings.events,
        active=settings.active,
        content_type=settings.content_type,
        insecure_ssl=settings.insecure_ssl,
    )
    body = sim.webhooks.hook_body(hook, sim.urls)
    return Reply(201, body, {"Location": body["url"]})


async def get_hook(sim: Simulator, request: Request, caller: Caller) -> Reply:
    return Reply(200, sim.webhooks.hook_body(_hook(sim, request), sim.urls))


async def delete_hook(sim: Simulator, request: Request, caller: Caller) -> Reply:
    sim.webhooks.delete_hook(_hook(sim, request))
    return Reply(204)


async def ping_hook(sim: Simulator, request: Request, caller: Caller) -> Reply:
    sim.webhooks.ping(_hook(sim, request))
    return Reply(204)


def _succeeded(delivery: Delivery, wanted: str) -> bool:
    code: int = delivery.item()["status_code"]
    return 200 <= code <= 399 if wanted == "success" else 400 <= code <= 599


def _cursor_page(
    request: Request, deliveries: list[Delivery]
) -> tuple[list[Delivery], dict[str, str]]:
    """One page of ``deliveries`` (newest first) starting at the delivery the ``cursor``
    names (``v1_<id>``; GitHub's cursors are opaque), with ``next``/``prev`` cursor links."""
    try:
        per_page = int(request.query_params.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    start = 0
    cursor = request.query_params.get("cursor")
    if cursor:
        match = _CURSOR.fullmatch(cursor)
        if match is None:
            raise ApiError(400, f"Invalid cursor: {cursor!r}")
        start = next(
            (i for i, d in enumerate(deliveries) if d.id <= int(match[1])), len(deliveries)
        )
    page = deliveries[start : start + per_page]
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    base = str(request.url.replace(query=""))

    def link(index: int, rel: str) -> str:
        query = urlencode({**params, "per_page": per_page, "cursor": f"v1_{deliveries[index].id}"})
        return f'<{base}?{query}>; rel="{rel}"'

    links = []
    if start + per_page < len(deliveries):
        links.append(link(start + per_page, "next"))
    if start > 0:
        links.append(link(max(0, start - per_page), "prev"))
    return page, ({"Link": ", ".join(links)} if links else {})


async def list_deliveries(sim: Simulator, request: Request, caller: Caller) -> Reply:
    hook = _hook(sim, request)
    wanted = enum_param(request, "status", ("success", "failure"), resource="HookDelivery")
    deliveries = sim.webhooks.deliveries_of(hook)
    if wanted is not None:
        deliveries = [d for d in deliveries if _succeeded(d, wanted)]
    page, links = _cursor_page(request, deliveries)
    return Reply(200, [delivery.item() for delivery in page], links)


async def redeliver(sim: Simulator, request: Request, caller: Caller) -> Reply:
    hook = _hook(sim, request)
    delivery_id = int_param(request, "delivery_id")
    if not any(d.id == delivery_id for d in sim.webhooks.deliveries_of(hook)):
        raise not_found()
    sim.webhooks.redeliver(delivery_id)
    return Reply(202, {})


def routes() -> list[BaseRoute]:
    """The hook operations at repository and organisation level, by ``operationId``."""
    table: list[BaseRoute] = []
    for prefix, tag in ((REPO, "repos"), (ORG, "orgs")):
        hooks = f"{prefix}/hooks"
        one = f"{hooks}/{{hook_id}}"
        table += [
            operation("GET", hooks, f"{tag}/list-webhooks", list_hooks),
            operation("POST", hooks, f"{tag}/create-webhook", create_hook),
            operation("GET", one, f"{tag}/get-webhook", get_hook),
            operation("DELETE", one, f"{tag}/delete-webhook", delete_hook),
            operation("POST", f"{one}/pings", f"{tag}/ping-webhook", ping_hook),
            operation(
                "GET", f"{one}/deliveries", f"{tag}/list-webhook-deliveries", list_deliveries
            ),
            operation(
                "POST",
                f"{one}/deliveries/{{delivery_id}}/attempts",
                f"{tag}/redeliver-webhook-delivery",
                redeliver,
            ),
        ]
    return table
